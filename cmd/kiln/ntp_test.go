package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/services/ntp"
)

// TestNTPQuery asks a kiln NTP server on loopback: refused (and said so)
// while it is unsynchronized, its stratum once synchronized.
func TestNTPQuery(t *testing.T) {
	conn, err := ntp.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st := &ntp.State{}
	srv := ntp.New(ntp.Options{State: st}, slog.New(slog.NewTextHandler(t.Output(), nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := conn.LocalAddr().String()

	out, _, err := runCmd(t, runNTP, "", "query", addr)
	if err == nil || !strings.Contains(out, "not synchronized: leap indicator 3, stratum 16: clients will not use it") {
		t.Errorf("ntp query (unsynchronized) = %q, %v; want the refusal and an error", out, err)
	}
	st.Set(ntp.Status{Synced: true, Stratum: 3, Updated: time.Now()})
	out, _, err = runCmd(t, runNTP, "", "query", addr)
	if err != nil || !strings.Contains(out, "NTP server "+addr+": stratum 3, offset ") {
		t.Errorf("ntp query (synchronized) = %q, %v; want stratum 3", out, err)
	}
	if _, _, err := runCmd(t, runNTP, "", "status"); !errors.Is(err, errUsage) {
		t.Errorf("ntp status = %v, want errUsage", err)
	}
}
