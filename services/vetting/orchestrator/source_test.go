package orchestrator_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/vetting/orchestrator"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/verdict"
)

// clientFrom is an agent client whose connections come from local (a
// loopback address: all of 127/8 is local on Linux).
func clientFrom(t *testing.T, url, tok, local string) *protocol.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	if c, err := d.Dial("tcp", url[len("http://"):]); err != nil {
		t.Skipf("cannot connect from %s on this host: %v", local, err)
	} else {
		c.Close()
	}
	return &protocol.Client{BaseURL: url, Token: tok, MaxBackoff: 10 * time.Millisecond,
		HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}}
}

// TestRunTokenBoundToFirstHello: once the agent said hello from one
// address, the run's token is refused (403, nothing stored) from any other
// — a machine that learned the token cannot post a forged inventory or a
// passing report, nor say hello again.
func TestRunTokenBoundToFirstHello(t *testing.T) {
	f := newFixture(t, config.Vetting{}, "")
	ctx := context.Background()
	if _, err := f.orch.Start(ctx, orchestrator.StartRequest{Host: "node7"}); err != nil {
		t.Fatal(err)
	}
	id, tok := f.boot(t)
	runID := strconv.FormatInt(id, 10)
	agent := clientFrom(t, f.url, tok, "127.0.0.1")
	if _, err := agent.Hello(ctx, protocol.Hello{Protocol: protocol.Version}); err != nil {
		t.Fatal(err)
	}
	thief := clientFrom(t, f.url, tok, "127.0.0.2")
	thief.RunID = runID
	err := thief.Send(ctx, &protocol.Report{RunID: runID, Verdict: verdict.Pass})
	var se *protocol.StatusError
	if !errors.Is(err, protocol.ErrRefused) || !errors.As(err, &se) || se.Code != http.StatusForbidden {
		t.Errorf("report from another address = %v, want 403 refused", err)
	}
	if _, err := thief.Hello(ctx, protocol.Hello{Protocol: protocol.Version}); !errors.Is(err, protocol.ErrRefused) {
		t.Errorf("hello from another address = %v, want refused", err)
	}
	if r := f.run(t, id); r.Verdict != "" || r.AgentSource != "127.0.0.1" {
		t.Errorf("after the other address's report: verdict %q, bound to %q; want no verdict, bound to 127.0.0.1", r.Verdict, r.AgentSource)
	}
	if err := f.orch.CheckSource(ctx, runID, netip.MustParseAddr("127.0.0.2")); !errors.Is(err, protocol.ErrWrongSource) {
		t.Errorf("CheckSource(127.0.0.2) = %v, want ErrWrongSource", err)
	}
	// The agent itself carries on.
	if err := agent.Send(ctx, &protocol.Report{RunID: runID, Verdict: verdict.Fail}); err != nil {
		t.Errorf("the agent's own report = %v", err)
	}
	if r := f.run(t, id); r.Verdict != string(verdict.Fail) {
		t.Errorf("verdict after the agent's report = %q, want fail", r.Verdict)
	}
}
