package ntp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/metrics/metricstest"
)

var t0 = time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)

func synced() Status {
	return Status{Synced: true, Leap: LeapNone, Stratum: 3, RefID: [4]byte{192, 0, 2, 123}, Updated: t0,
		RootDelay: 20 * time.Millisecond, RootDispersion: 5 * time.Millisecond}
}

func TestReply(t *testing.T) {
	req := Packet{Version: 4, Mode: ModeClient, Poll: 6, Transmit: 0x1122334455667788}
	rx := TimeOf(t0.Add(time.Second))
	for _, tc := range []struct {
		name string
		req  Packet
		st   Status
		want Packet
		ok   bool
	}{
		{"unsynchronized: LI 3, stratum 16", req, Status{},
			Packet{Leap: LeapUnsynchronized, Version: 4, Mode: ModeServer, Stratum: 16, Poll: 6, Precision: precision, RefID: [4]byte{'I', 'N', 'I', 'T'}, Origin: req.Transmit, Receive: rx}, true},
		{"synced: upstream's stratum + 1 and its refid", req, synced(),
			Packet{Version: 4, Mode: ModeServer, Stratum: 3, Poll: 6, Precision: precision, RefID: [4]byte{192, 0, 2, 123},
				RootDelay: ShortOf(20 * time.Millisecond), RootDispersion: ShortOf(5 * time.Millisecond), Reference: TimeOf(t0), Origin: req.Transmit, Receive: rx}, true},
		{"leap second warning passed on", req, func() Status { s := synced(); s.Leap = LeapInsert; return s }(),
			Packet{Leap: LeapInsert, Version: 4, Mode: ModeServer, Stratum: 3, Poll: 6, Precision: precision, RefID: [4]byte{192, 0, 2, 123},
				RootDelay: ShortOf(20 * time.Millisecond), RootDispersion: ShortOf(5 * time.Millisecond), Reference: TimeOf(t0), Origin: req.Transmit, Receive: rx}, true},
		{"NTPv3 answered as v3, poll clamped", Packet{Version: 3, Mode: ModeClient, Poll: 30, Transmit: 7}, Status{},
			Packet{Leap: LeapUnsynchronized, Version: 3, Mode: ModeServer, Stratum: 16, Poll: 17, Precision: precision, RefID: [4]byte{'I', 'N', 'I', 'T'}, Origin: 7, Receive: rx}, true},
		{"poll below 4 raised", Packet{Version: 4, Mode: ModeClient, Poll: 0, Transmit: 7}, Status{},
			Packet{Leap: LeapUnsynchronized, Version: 4, Mode: ModeServer, Stratum: 16, Poll: 4, Precision: precision, RefID: [4]byte{'I', 'N', 'I', 'T'}, Origin: 7, Receive: rx}, true},
		{"control (mode 6) ignored", Packet{Version: 2, Mode: 6}, synced(), Packet{}, false},
		{"private (mode 7, monlist) ignored", Packet{Version: 2, Mode: 7}, synced(), Packet{}, false},
		{"symmetric active ignored", Packet{Version: 4, Mode: 1}, synced(), Packet{}, false},
		{"server reply ignored", Packet{Version: 4, Mode: ModeServer}, synced(), Packet{}, false},
		{"broadcast ignored", Packet{Version: 4, Mode: 5}, synced(), Packet{}, false},
		{"version 0 ignored", Packet{Version: 0, Mode: ModeClient}, synced(), Packet{}, false},
		{"version 5 ignored", Packet{Version: 5, Mode: ModeClient}, synced(), Packet{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := reply(tc.req, tc.st, rx)
			if ok != tc.ok {
				t.Fatalf("reply() ok = %v, want %v", ok, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("reply() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStatusAt(t *testing.T) {
	for _, tc := range []struct {
		name     string
		st       Status
		at       time.Time
		synced   bool
		wantDisp time.Duration
	}{
		{"never synced", Status{}, t0, false, 0},
		{"fresh", synced(), t0, true, 5 * time.Millisecond},
		{"an hour on: +54 ms dispersion", synced(), t0.Add(time.Hour), true, 59 * time.Millisecond},
		{"clock went back: no negative age", synced(), t0.Add(-time.Hour), true, 5 * time.Millisecond},
		{"a day on: still under 1.5 s", synced(), t0.Add(24 * time.Hour), true, 5*time.Millisecond + 1296*time.Millisecond},
		{"28 hours on: root distance over 1.5 s", synced(), t0.Add(28 * time.Hour), false, 0},
	} {
		got := tc.st.At(tc.at)
		if got.Synced != tc.synced || got.RootDispersion != tc.wantDisp {
			t.Errorf("%s: At() = synced %v dispersion %v, want %v %v", tc.name, got.Synced, got.RootDispersion, tc.synced, tc.wantDisp)
		}
	}
}

// startServer runs a server on a loopback port and returns its address.
func startServer(t *testing.T, st *State, reg *metrics.Registry) netip.AddrPort {
	t.Helper()
	conn, err := ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{State: st, Metrics: reg}, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v", err)
		}
	})
	return conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "ntp")
}

func dial(t *testing.T, ap netip.AddrPort) net.Conn {
	t.Helper()
	c, err := net.Dial("udp", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestLoopback (tier 2) queries a running server with kiln's own client:
// refused while unsynchronized, a sample of the served stratum once synced;
// a control packet sent first gets no answer (the first datagram back
// answers the client request). The server counts a request before its reply
// leaves and handles one datagram at a time, so the counters are exact once
// the last reply is in.
func TestLoopback(t *testing.T) {
	st := &State{}
	reg := metrics.New()
	ap := startServer(t, st, reg)
	c := dial(t, ap)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := c.Write((Packet{Version: 2, Mode: 7}).Append(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte{0x23, 0, 6}); err != nil {
		t.Fatal(err)
	}
	if _, err := query(ctx, c, time.Now); !errors.Is(err, ErrUnsynchronized) {
		t.Fatalf("query(unsynchronized server) = %v, want ErrUnsynchronized", err)
	}

	s := synced()
	s.Updated = time.Now()
	st.Set(s)
	sm, err := query(ctx, c, time.Now)
	if err != nil {
		t.Fatalf("query(synced server) = %v", err)
	}
	if sm.Stratum != 3 || sm.RefID != s.RefID || sm.Offset.Abs() > 50*time.Millisecond || sm.Delay < 0 {
		t.Errorf("query() = %+v, want stratum 3, refid %v, offset near 0 on one host", sm, s.RefID)
	}
	checkMetrics(t, reg, []series{
		{"kiln_ntp_requests_total", []string{"result", "ignored"}, 1},
		{"kiln_ntp_requests_total", []string{"result", "malformed"}, 1},
		{"kiln_ntp_requests_total", []string{"result", "served_unsynced"}, 1},
		{"kiln_ntp_requests_total", []string{"result", "served"}, 1},
		{"kiln_ntp_synced", nil, 1},
		{"kiln_ntp_stratum", nil, 3},
	})
}

// series is one expected value of a scrape.
type series struct {
	fam  string
	kv   []string
	want float64
}

// checkMetrics scrapes reg with Prometheus' parser and compares each series.
func checkMetrics(t *testing.T, reg *metrics.Registry, want []series) metricstest.Families {
	t.Helper()
	fams := metricstest.Scrape(t, reg)
	for _, m := range want {
		if got := fams.Value(m.fam, m.kv...); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.fam, m.kv, got, m.want)
		}
	}
	return fams
}
