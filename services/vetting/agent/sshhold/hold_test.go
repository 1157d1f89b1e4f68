package sshhold_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/services/vetting/agent"
	"kiln.dev/kiln/services/vetting/agent/sshhold"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/stages"
)

// backend is a small orchestrator: one failing assignment that asks for a
// hold, every event kept, and a release switch.
type backend struct {
	assignment protocol.Assignment

	mu sync.Mutex
	// events and released are guarded by mu.
	events   []protocol.Event
	released bool
}

func (b *backend) Hello(context.Context, string, protocol.Hello) (protocol.Assignment, error) {
	return b.assignment, nil
}

func (b *backend) Record(_ context.Context, _ string, m protocol.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	ev, ok := m.(*protocol.Events)
	if !ok {
		return nil
	}
	if b.released {
		return protocol.ErrRunOver // 410: the operator released the host
	}
	b.events = append(b.events, ev.Events...)
	return nil
}

func (b *backend) holding() []protocol.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []protocol.Event
	for _, e := range b.events {
		if e.Kind == protocol.EventHolding {
			out = append(out, e)
		}
	}
	return out
}

// TestHoldFlow runs the agent against a loopback orchestrator: a failed run
// holds the host, announces the SSH server, the run's key logs in, and the
// release ends the hold and the server.
func TestHoldFlow(t *testing.T) {
	k := newKey(t)
	b := &backend{assignment: protocol.Assignment{HoldOnFailure: true, HoldKey: k.line,
		Spec: "expect:\n  - fact: cpu.threads\n    min: 100000\n"}}
	tokens := protocol.NewTokens()
	tok, err := tokens.Issue("run-h", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	log := testlog.New(t, slog.LevelInfo)
	api := httptest.NewServer(protocol.NewHandler(protocol.Options{Tokens: tokens, Backend: b}))
	defer api.Close()

	type announced struct{ addr, hostKey string }
	up := make(chan announced, 1)
	o := agent.Options{ServerURL: api.URL, Token: tok, Host: "h1", Logger: log, HelloTimeout: 5 * time.Second,
		Settings:      &stages.Profile{Name: "cpu-only", Stages: []string{"cpu"}, CPU: stages.CPU{Duration: 100 * time.Millisecond}},
		HoldHeartbeat: 100 * time.Millisecond,
		Hold: sshhold.Hold(sshhold.HoldOptions{Listen: "127.0.0.1:0", ServerURL: api.URL, Logger: log,
			Holding: func(addr, hostKey string) { up <- announced{addr, hostKey} }}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type result struct {
		r   protocol.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := agent.Run(ctx, o)
		done <- result{r, err}
	}()

	var a announced
	select {
	case a = <-up:
	case r := <-done:
		t.Fatalf("agent.Run returned before holding: verdict %s, %v", r.r.Verdict, r.err)
	case <-time.After(time.Minute):
		t.Fatal("the agent never started holding")
	}
	if !strings.HasPrefix(a.addr, "127.0.0.1:") {
		t.Errorf("announced address %q, want 127.0.0.1:<port>", a.addr)
	}
	// The heartbeat repeats the event with the same address and key.
	deadline := time.Now().Add(10 * time.Second)
	for len(b.holding()) < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	hs := b.holding()
	if len(hs) < 3 {
		t.Fatalf("%d holding events after 10 s with a 100 ms heartbeat, want ≥ 3", len(hs))
	}
	for _, e := range hs {
		if e.Addr != a.addr || e.HostKey != a.hostKey {
			t.Fatalf("holding event %+v, want addr %s and the server's host key", e, a.addr)
		}
	}

	// The operator connects as the orchestrator tells them to.
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hs[0].HostKey))
	if err != nil {
		t.Fatalf("holding event's host key %q: %v", hs[0].HostKey, err)
	}
	c, err := ssh.Dial("tcp", a.addr, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(k.signer)},
		HostKeyCallback: ssh.FixedHostKey(hk), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("SSH login with the run's key: %v", err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Output("echo held-$((6*7))")
	if err != nil || string(out) != "held-42\n" {
		t.Errorf("command on the held host = %q, %v; want held-42", out, err)
	}
	other := newKey(t)
	if c2, err := ssh.Dial("tcp", a.addr, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(other.signer)},
		HostKeyCallback: ssh.FixedHostKey(hk), Timeout: 10 * time.Second}); err == nil {
		c2.Close()
		t.Error("another key logged in to the held host")
	}

	// A session still open when the release comes is cut off.
	long, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := long.Start("sleep 600"); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.released = true
	b.mu.Unlock()
	select {
	case r := <-done:
		if r.err != nil {
			t.Errorf("agent.Run after the release = %v, want nil", r.err)
		}
		if r.r.RunID != "run-h" || r.r.Verdict != "FAIL" {
			t.Errorf("report = %s %s, want run-h FAIL", r.r.RunID, r.r.Verdict)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the hold did not end within 10 s of the release (100 ms heartbeat)")
	}
	if err := long.Wait(); err == nil {
		t.Error("a session outlived the hold")
	}
	if conn, err := net.DialTimeout("tcp", a.addr, time.Second); err == nil {
		conn.Close()
		t.Error("the SSH server still accepts after the hold ended")
	}

	// Seq numbering continues the run's, without gaps.
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, e := range b.events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d (%s) has seq %d, want %d", i, e.Kind, e.Seq, i+1)
		}
	}
}

func TestHoldBadKey(t *testing.T) {
	hold := sshhold.Hold(sshhold.HoldOptions{Listen: "127.0.0.1:0"})
	err := hold(context.Background(), agent.HoldRequest{AuthorizedKey: "not a key"})
	if !errors.Is(err, sshhold.ErrConfig) {
		t.Errorf("Hold with a malformed key = %v, want ErrConfig", err)
	}
}

func TestAdvertise(t *testing.T) {
	for _, tc := range []struct {
		server string
		ln     net.Addr
		want   string
	}{
		{"http://127.0.0.1:9", &net.TCPAddr{IP: net.IPv4zero, Port: 22}, "127.0.0.1:22"},
		{"http://127.0.0.1", &net.TCPAddr{Port: 2222}, "127.0.0.1:2222"},
		{"http://10.0.0.1", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 22}, "127.0.0.2:22"},
	} {
		if got := sshhold.Advertise(tc.server, tc.ln); got != tc.want {
			t.Errorf("Advertise(%s, %s) = %s, want %s", tc.server, tc.ln, got, tc.want)
		}
	}
	// Without a route to the appliance, some address of this machine with
	// the port: never an empty host.
	got := sshhold.Advertise("http://[", &net.TCPAddr{Port: 22})
	host, port, err := net.SplitHostPort(got)
	if err != nil || host == "" || port != strconv.Itoa(22) {
		t.Errorf("Advertise(bad URL) = %q, want host:22", got)
	}
}
