package ntp

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/services/internal/netnstest"
	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/metrics/metricstest"
)

// TestNetnsChrony (tier 3) puts a real Debian NTP client and a real
// upstream on either side of kiln, each in its own network namespace:
//
//	ns up: chronyd serving its clock as stratum 1 (-x: it never touches the clock)
//	  │ veth
//	kiln (this process): Server on the client link + Syncer following "up"
//	  │ veth
//	ns client: chronyd -Q (query only, prints the offset it would correct)
//
// While kiln is unsynchronized the client sees leap indicator 3 and takes
// no time from it; once kiln has polled its upstream the client accepts it
// at stratum 2. The syncer's Clock records corrections instead of making
// them, so the host's clock is never touched.
func TestNetnsChrony(t *testing.T) {
	netnstest.Require(t, "chronyd")
	octet := 1 + os.Getpid()%250
	upHost, upNS := fmt.Sprintf("10.123.%d.1", octet), fmt.Sprintf("10.123.%d.2", octet)
	clHost, clNS := fmt.Sprintf("10.123.%d.5", octet), fmt.Sprintf("10.123.%d.6", octet)
	up := netnstest.NewHostLink(t, "kiln-ntpu-", 0, upHost+"/30", upNS+"/30")
	client := netnstest.NewHostLink(t, "kiln-ntpc-", 0, clHost+"/30", clNS+"/30")

	dir := t.TempDir()
	conf := filepath.Join(dir, "chrony.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("local stratum 1\nallow all\nbindaddress %s\ncmdport 0\npidfile %s\n", upNS, filepath.Join(dir, "chronyd.pid"))), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	srvCtx, stopChrony := context.WithCancel(ctx)
	chrony := exec.CommandContext(srvCtx, "ip", "netns", "exec", up.Name, "chronyd", "-x", "-d", "-u", "root", "-f", conf)
	var chronyLog strings.Builder
	chrony.Stdout, chrony.Stderr = &chronyLog, &chronyLog
	if err := chrony.Start(); err != nil {
		t.Fatalf("starting chronyd: %v", err)
	}
	t.Cleanup(func() {
		stopChrony()
		chrony.Wait()
		t.Logf("upstream chronyd:\n%s", chronyLog.String())
	})

	state := &State{}
	conn, err := ListenUDP(net.JoinHostPort(clHost, "123"))
	if err != nil {
		t.Fatal(err)
	}
	reg := metrics.New()
	srv := New(Options{State: state, Metrics: reg}, testLogger(t))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn, nil) }()
	t.Cleanup(func() { cancel(); <-done })

	ask := func() string {
		t.Helper()
		// maxsamples 1: one exchange and exit; a source it cannot use
		// (leap indicator 3) makes chronyd give up after its poll.
		out, err := client.Exec(ctx, "chronyd", "-Q", "-d", "-u", "root", "-f", "/dev/null", "-t", "10",
			fmt.Sprintf("server %s iburst minpoll -2 maxpoll -2 maxsamples 1", clHost))
		if err != nil && ctx.Err() != nil {
			t.Fatalf("chronyd -Q: %v\n%s", err, out)
		}
		return out
	}

	out := ask()
	if strings.Contains(out, "System clock wrong by") || !strings.Contains(out, "No suitable source") {
		t.Errorf("chronyd -Q of an unsynchronized kiln, want \"No suitable source\":\n%s", out)
	}
	if n := metricstest.Scrape(t, reg).Value("kiln_ntp_requests_total", "result", "served_unsynced"); !(n >= 1) {
		t.Errorf("kiln answered %v requests as unsynchronized, want chronyd's", n)
	}

	clock := &recordingClock{}
	sy := NewSyncer(SyncOptions{Servers: []string{net.JoinHostPort(upNS, "123")}, Samples: 2, Spacing: 100 * time.Millisecond, Clock: clock, State: state}, testLogger(t))
	var st Status
	for try := 0; ; try++ {
		if st, err = sy.Poll(ctx); err == nil {
			break
		}
		if try == 20 || ctx.Err() != nil {
			t.Fatalf("Poll(chronyd upstream) = %v", err)
		}
		time.Sleep(250 * time.Millisecond) // chronyd still starting
	}
	if st.Stratum != 2 {
		t.Errorf("status after polling a stratum 1 chronyd = %+v, want stratum 2", st)
	}
	if got := clock.got(); len(got) != 1 || got[0] != "slew 0s" {
		t.Errorf("corrections = %v, want one slew of about 0 (chronyd and kiln share the host's clock)", got)
	}

	out = ask()
	if !strings.Contains(out, "System clock wrong by") {
		t.Errorf("chronyd -Q did not accept a synchronized kiln:\n%s", out)
	}
	if n := metricstest.Scrape(t, reg).Value("kiln_ntp_requests_total", "result", "served"); !(n >= 1) {
		t.Errorf("kiln answered %v requests as synchronized, want chronyd's", n)
	}
}
