package ntp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"kiln.dev/kiln/services/metrics"
)

func TestMeasure(t *testing.T) {
	t1 := t0
	// Server 250 ms ahead, 10 ms each way, 2 ms inside the server.
	good := Packet{Version: 4, Mode: ModeServer, Stratum: 2, Precision: -20, RefID: [4]byte{192, 0, 2, 1},
		RootDelay: ShortOf(4 * time.Millisecond), RootDispersion: ShortOf(time.Millisecond),
		Receive: TimeOf(t1.Add(260 * time.Millisecond)), Transmit: TimeOf(t1.Add(262 * time.Millisecond))}
	t4 := t1.Add(22 * time.Millisecond)
	with := func(f func(*Packet)) Packet { p := good; f(&p); return p }
	for _, tc := range []struct {
		name string
		resp Packet
		err  error
	}{
		{"good", good, nil},
		{"client mode", with(func(p *Packet) { p.Mode = ModeClient }), ErrBogus},
		{"kiss-o'-death RATE", with(func(p *Packet) { p.Stratum = 0; p.RefID = [4]byte{'R', 'A', 'T', 'E'} }), ErrKissOfDeath},
		{"leap indicator 3", with(func(p *Packet) { p.Leap = LeapUnsynchronized }), ErrUnsynchronized},
		{"stratum 16", with(func(p *Packet) { p.Stratum = 16 }), ErrUnsynchronized},
		{"zero transmit", with(func(p *Packet) { p.Transmit = 0 }), ErrBogus},
		{"server held it longer than the round trip", with(func(p *Packet) { p.Transmit = TimeOf(t1.Add(300 * time.Millisecond)) }), ErrBogus},
		{"root distance over 1.5 s", with(func(p *Packet) { p.RootDispersion = ShortOf(1600 * time.Millisecond) }), ErrBogus},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := measure(tc.resp, t1, t4)
			if !errors.Is(err, tc.err) {
				t.Fatalf("measure() = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			// Timestamps are 2^-32 s apart: allow a few nanoseconds.
			if (s.Offset-250*time.Millisecond).Abs() > 5 || (s.Delay-20*time.Millisecond).Abs() > 5 {
				t.Errorf("measure() offset %v delay %v, want 250ms 20ms", s.Offset, s.Delay)
			}
			if s.Stratum != 2 || s.RefID != good.RefID || (s.RootDelay-4*time.Millisecond).Abs() > 20*time.Microsecond {
				t.Errorf("measure() = %+v", s)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	const th = DefaultStepThreshold
	for _, tc := range []struct {
		offset   time.Duration
		adjusted bool
		pending  int
		want     string
	}{
		{10 * time.Millisecond, false, 0, actionSlew},
		{-th, false, 0, actionSlew},
		{th + 1, false, 0, actionStep},
		{-5 * time.Second, false, 0, actionStep},
		{5 * time.Second, true, 0, actionDefer},
		{-5 * time.Second, true, 1, actionStep},
		{50 * time.Millisecond, true, 1, actionSlew},
	} {
		if got := decide(tc.offset, th, tc.adjusted, tc.pending); got != tc.want {
			t.Errorf("decide(%v, adjusted %v, pending %d) = %s, want %s", tc.offset, tc.adjusted, tc.pending, got, tc.want)
		}
	}
}

func TestChoose(t *testing.T) {
	s := func(name string, offset, dist time.Duration) Sample {
		return Sample{Server: netip.MustParseAddrPort(name + ":123"), Offset: offset, RootDispersion: dist}
	}
	a, b, c, d := s("192.0.2.1", 10*time.Millisecond, 30*time.Millisecond), s("192.0.2.2", 12*time.Millisecond, 10*time.Millisecond),
		s("192.0.2.3", 9*time.Millisecond, 20*time.Millisecond), s("192.0.2.4", 40*time.Second, time.Millisecond)
	for _, tc := range []struct {
		name string
		in   []Sample
		want netip.AddrPort
		fail bool
	}{
		{"none", nil, netip.AddrPort{}, true},
		{"one", []Sample{a}, a.Server, false},
		{"two: smallest root distance, no voting", []Sample{a, d}, d.Server, false},
		{"falseticker dropped though its distance is smallest", []Sample{a, b, c, d}, b.Server, false},
		{"no majority", []Sample{a, d, s("192.0.2.5", -40*time.Second, 0)}, netip.AddrPort{}, true},
	} {
		got, err := choose(tc.in, DefaultStepThreshold)
		if (err != nil) != tc.fail || got.Server != tc.want {
			t.Errorf("%s: choose() = %v, %v; want %v (fail %v)", tc.name, got.Server, err, tc.want, tc.fail)
		}
	}
}

// recordingClock is a Clock that remembers corrections instead of making
// them (the tests must not move the host's clock).
type recordingClock struct {
	// mu guards adj.
	mu  sync.Mutex
	adj []string
}

func (c *recordingClock) Adjust(offset time.Duration, step bool, _ time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	kind := actionSlew
	if step {
		kind = actionStep
	}
	c.adj = append(c.adj, fmt.Sprintf("%s %s", kind, offset.Round(time.Second)))
	return nil
}

func (c *recordingClock) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.adj...)
}

// upstream runs a kiln server on loopback whose clock is skew ahead and
// that says it is synchronized at stratum.
func upstream(t *testing.T, stratum uint8, skew time.Duration) netip.AddrPort {
	t.Helper()
	st := &State{}
	if stratum > 0 {
		st.Set(Status{Synced: true, Stratum: stratum, RefID: [4]byte{'G', 'P', 'S', 0}, Updated: time.Now().Add(skew), RootDispersion: time.Millisecond})
	}
	conn, err := ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{State: st, Now: func() time.Time { return time.Now().Add(skew) }}, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, conn, nil); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestSyncer (tier 2) polls kiln servers on loopback: an upstream 3 s
// ahead is stepped to at the first poll, deferred at the second, stepped
// to again at the third (two polls in a row agree); an unsynchronized
// upstream is never followed.
func TestSyncer(t *testing.T) {
	ahead := upstream(t, 1, 3*time.Second)
	unsynced := upstream(t, 0, 0)
	clock := &recordingClock{}
	state := &State{}
	reg := metrics.New()
	sy := NewSyncer(SyncOptions{
		Servers: []string{ahead.String(), unsynced.String()}, Samples: 2, Spacing: time.Millisecond,
		Clock: clock, State: state, Metrics: reg,
	}, testLogger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 3 {
		if _, err := sy.Poll(ctx); err != nil {
			t.Fatalf("Poll() = %v", err)
		}
	}
	if got, want := clock.got(), []string{"step 3s", "step 3s"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("corrections = %v, want %v", got, want)
	}
	st := state.Get()
	if !st.Synced || st.Stratum != 2 || st.RefID != [4]byte{127, 0, 0, 1} || st.Upstream != ahead {
		t.Errorf("status = %+v, want synced at stratum 2 from %v", st, ahead)
	}
	fams := checkMetrics(t, reg, []series{
		{"kiln_ntp_upstream_queries_total", []string{"result", "ok"}, 6},
		{"kiln_ntp_upstream_queries_total", []string{"result", "unsynchronized"}, 6},
		{"kiln_ntp_clock_adjustments_total", []string{"kind", "step"}, 2},
		{"kiln_ntp_clock_adjustments_total", []string{"kind", "deferred"}, 1},
	})
	if got := fams.Value("kiln_ntp_offset_seconds"); got < 2.9 || got > 3.1 {
		t.Errorf("kiln_ntp_offset_seconds = %v, want about 3", got)
	}

	only := NewSyncer(SyncOptions{Servers: []string{unsynced.String()}, Samples: 1, Clock: clock, State: &State{}}, testLogger(t))
	if _, err := only.Poll(ctx); !errors.Is(err, ErrNoServer) || !errors.Is(err, ErrUnsynchronized) {
		t.Errorf("Poll(only an unsynchronized upstream) = %v, want ErrNoServer and ErrUnsynchronized", err)
	}
}

// TestSyncerSlews: a small offset is slewed, and the status served carries
// what is left to slew in its dispersion.
func TestSyncerSlews(t *testing.T) {
	up := upstream(t, 2, 40*time.Millisecond)
	clock := &recordingClock{}
	state := &State{}
	sy := NewSyncer(SyncOptions{Servers: []string{up.String()}, Samples: 1, Clock: clock, State: state}, testLogger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := sy.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := clock.got(); len(got) != 1 || got[0] != "slew 0s" {
		t.Errorf("corrections = %v, want one slew", got)
	}
	if st.Stratum != 3 || st.RootDispersion < 40*time.Millisecond {
		t.Errorf("status = %+v, want stratum 3 with the 40 ms yet to slew in the dispersion", st)
	}
}
