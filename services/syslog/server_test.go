package syslog

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/metrics/metricstest"
	"kiln.dev/kiln/services/store"
)

// clock is a settable time source shared by the server and the sink.
type clock struct {
	// mu guards t.
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// testLogger routes the server's log to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "syslog")
}

// startServer serves on loopback UDP and TCP into a fresh store until the
// test ends; it returns the address both listen on.
func startServer(t *testing.T, st *store.Store, clk *clock, reg *metrics.Registry) string {
	t.Helper()
	udp, tcp, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp.Close() // the TCP port must be the UDP one, as in production
	port := udp.LocalAddr().(*net.UDPAddr).Port
	if tcp, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		t.Skipf("TCP port %d of the UDP socket is taken: %v", port, err)
	}
	srv := New(Options{Now: clk.Now, Metrics: reg}, NewStoreSink(st, clk.Now), testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- srv.Serve(ctx, udp, tcp, func() { close(ready) }) }()
	<-ready
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve = %v after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return within 10s of cancel")
		}
	})
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// waitMessages polls st until it holds want messages of q, failing after a
// deadline with what it holds.
func waitMessages(t *testing.T, st *store.Store, q store.SyslogQuery, want int) []store.SyslogMessage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := st.Syslog(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) >= want {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s the store holds %d messages of %+v, want %d: %+v", len(got), q, want, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServerBootSessions sends over UDP and both TCP framings from a host's
// reserved address, across two network boots of that host, and reads the
// messages back attributed to the host and split into two boot sessions.
func TestServerBootSessions(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Path(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const mac = "52:54:00:aa:bb:07"
	if _, err := st.CreateHost(ctx, store.Host{Name: "pc-07", MACs: []string{mac}, IPv4: netip.MustParseAddr("127.0.0.7")}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	clk := &clock{t: t0}
	reg := metrics.New()
	addr := startServer(t, st, clk, reg)
	local := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 7)}
	boot := func(at time.Time) int64 {
		t.Helper()
		for i, d := range []string{"ip=127.0.0.7 subnet=lo file=ipxe.efi arch=7", "ip=127.0.0.7 subnet=lo file=http://x/boot/y.ipxe arch=7 ipxe"} {
			if err := st.AddBootEvent(ctx, store.BootEvent{MAC: mac, Host: "pc-07", Kind: store.EventDHCPOffer, Detail: d, Time: at.Add(time.Duration(i) * time.Second)}); err != nil {
				t.Fatal(err)
			}
		}
		offers, err := st.DHCPOffers(ctx, mac, at.Add(time.Minute), 2)
		if err != nil || len(offers) != 2 {
			t.Fatalf("DHCPOffers = %v, %v", offers, err)
		}
		return offers[1].ID // the firmware's offer starts the session
	}

	first := boot(t0)
	clk.Set(t0.Add(time.Minute))
	udp, err := net.DialUDP("udp", local, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	if _, err := udp.Write([]byte("<30>Dec  7 15:01:00 pc-07 systemd[1]: Started Journal Service.")); err != nil {
		t.Fatal(err)
	}
	tcp, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: local.IP}, Timeout: 5 * time.Second}).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	msg5424 := "<86>1 2026-12-07T15:01:02Z pc-07 sshd 812 - - Accepted publickey for root"
	fmt.Fprintf(tcp, "%d %s<14>Dec  7 15:01:03 pc-07 kernel: line two\n", len(msg5424), msg5424)
	got := waitMessages(t, st, store.SyslogQuery{Host: "pc-07"}, 3)
	for _, m := range got {
		if m.Session != first || m.MAC != mac || m.Source != netip.MustParseAddr("127.0.0.7") {
			t.Errorf("first boot: message %q = session %d mac %s source %s, want session %d mac %s source 127.0.0.7", m.Text, m.Session, m.MAC, m.Source, first, mac)
		}
	}
	if got[0].Proto != "udp" || got[0].App != "systemd" || got[1].App != "sshd" || got[1].Proto != "tcp" || got[2].Text != "line two" {
		t.Errorf("first boot messages = %+v", got)
	}

	// The second boot, past the sink's attribution cache.
	second := boot(t0.Add(time.Hour))
	clk.Set(t0.Add(time.Hour + time.Minute))
	fmt.Fprintf(tcp, "<14>Dec  7 16:01:00 pc-07 kernel: rebooted\n")
	if _, err := udp.Write([]byte("<30>1 2026-12-07T16:01:01Z pc-07 agent 1 - - vetting started")); err != nil {
		t.Fatal(err)
	}
	tcp.Close()
	got = waitMessages(t, st, store.SyslogQuery{Host: "pc-07", Session: second}, 2)
	if first == second || len(got) != 2 {
		t.Fatalf("second boot: sessions %d and %d, messages %+v", first, second, got)
	}
	if n, _ := st.Syslog(ctx, store.SyslogQuery{Session: first}); len(n) != 3 {
		t.Errorf("first session has %d messages after the second boot, want 3", len(n))
	}

	fams := metricstest.Scrape(t, reg)
	if v := fams.Value("kiln_syslog_messages_total", "proto", "udp", "result", "accepted"); v != 2 {
		t.Errorf("kiln_syslog_messages_total{udp,accepted} = %v, want 2", v)
	}
	if v := fams.Value("kiln_syslog_messages_total", "proto", "tcp", "result", "accepted"); v != 3 {
		t.Errorf("kiln_syslog_messages_total{tcp,accepted} = %v, want 3", v)
	}
}

// TestServerUnknownSourceAndMalformed: a source kiln knows nothing of is
// stored unattributed; a datagram without PRI is dropped and counted; a
// stream with a broken octet count is closed.
func TestServerUnknownSourceAndMalformed(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Path(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clk := &clock{t: time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)}
	reg := metrics.New()
	addr := startServer(t, st, clk, reg)
	udp, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	udp.Write([]byte("no pri here"))
	udp.Write([]byte("<13>switch: port 7 up"))
	got := waitMessages(t, st, store.SyslogQuery{}, 1)
	if m := got[0]; m.MAC != "" || m.Host != "" || m.Session != 0 || m.App != "switch" {
		t.Errorf("unattributed message = %+v", m)
	}
	tcp, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tcp.Write([]byte("12x <13>bad\n"))
	tcp.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := tcp.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("read after a broken octet count = %v, want the connection closed", err)
	}
	fams := metricstest.Scrape(t, reg)
	if v := fams.Value("kiln_syslog_messages_total", "proto", "udp", "result", "malformed"); v != 1 {
		t.Errorf("kiln_syslog_messages_total{udp,malformed} = %v, want 1", v)
	}
	if v := fams.Value("kiln_syslog_messages_total", "proto", "tcp", "result", "malformed"); v != 1 {
		t.Errorf("kiln_syslog_messages_total{tcp,malformed} = %v, want 1", v)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
