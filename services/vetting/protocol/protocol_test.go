package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/services/vetting/verdict"
)

// backend is a small real Backend that keeps what it receives.
type backend struct {
	mu sync.Mutex
	// hellos, msgs and failures are guarded by mu.
	hellos   []Hello
	msgs     []Message
	failures []error // returned by the next Record calls, in order
}

func (b *backend) Hello(_ context.Context, run string, h Hello) (Assignment, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hellos = append(b.hellos, h)
	return Assignment{Profile: "quick", Spec: "expect: []\n", Deadline: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}, nil
}

func (b *backend) Record(_ context.Context, run string, m Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.failures) > 0 {
		err := b.failures[0]
		b.failures = b.failures[1:]
		return err
	}
	b.msgs = append(b.msgs, m)
	return nil
}

type clock struct {
	mu sync.Mutex
	// now is guarded by mu.
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

type fixture struct {
	srv     *httptest.Server
	tokens  *Tokens
	backend *backend
	clock   *clock
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{tokens: NewTokens(), backend: &backend{},
		clock: &clock{now: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}}
	h := NewHandler(Options{Tokens: f.tokens, Backend: f.backend, Now: f.clock.Now,
		Logger: testlog.New(t, slog.LevelInfo).With("component", "vetting")})
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) issue(t *testing.T, run string, ttl time.Duration) string {
	t.Helper()
	tok, err := f.tokens.Issue(run, f.clock.Now().Add(ttl))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *fixture) client(token string) *Client {
	return &Client{BaseURL: f.srv.URL, Token: token, MaxBackoff: 20 * time.Millisecond}
}

func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConversation(t *testing.T) {
	f := newFixture(t)
	c := f.client(f.issue(t, "run-1", time.Hour))
	ctx := timeout(t)
	a, err := c.Hello(ctx, Hello{AgentVersion: "test", Host: "node1", MAC: "52:54:00:12:34:56"})
	if err != nil {
		t.Fatalf("Hello: %v", err)
	}
	if a.RunID != "run-1" || c.RunID != "run-1" || a.Profile != "quick" {
		t.Errorf("Hello = %+v (client run %q), want run-1 with profile quick", a, c.RunID)
	}
	msgs := []Message{
		&Inventory{},
		&Events{Events: []Event{{Seq: 1, Kind: EventStageStart, Stage: "cpu", Timeout: time.Minute},
			{Seq: 2, Kind: EventStageEnd, Stage: "cpu", Result: &verdict.StageResult{Stage: "cpu", Status: verdict.Pass,
				Measurements: []verdict.Measurement{verdict.Measure("cpu.compute_errors", 0, "")}}}}},
		&Report{RunID: "run-1", Verdict: verdict.Pass},
	}
	for _, m := range msgs {
		if err := c.Send(ctx, m); err != nil {
			t.Fatalf("Send(%T): %v", m, err)
		}
	}
	f.backend.mu.Lock()
	defer f.backend.mu.Unlock()
	if len(f.backend.hellos) != 1 || f.backend.hellos[0].Protocol != Version || f.backend.hellos[0].Host != "node1" {
		t.Errorf("backend hellos = %+v, want one from node1 speaking version %d", f.backend.hellos, Version)
	}
	if diff := cmp.Diff(msgs, f.backend.msgs, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("backend messages (-sent +received):\n%s", diff)
	}
}

// raw sends one request the way a stranger could, without the client.
func raw(t *testing.T, method, url, token, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestTokensRefused(t *testing.T) {
	f := newFixture(t)
	mine := f.issue(t, "run-1", time.Hour)
	other := f.issue(t, "run-2", time.Hour)
	short := f.issue(t, "run-1", time.Minute)
	revoked := f.issue(t, "run-3", time.Hour)
	f.tokens.Revoke("run-3")
	f.clock.advance(2 * time.Minute) // short has expired
	events := f.srv.URL + "/vet/v1/runs/run-1/events"
	hello := f.srv.URL + PathHello
	for _, tc := range []struct {
		name, method, url, token, body string
		code                           int
		msg                            string
	}{
		{"own token", "POST", events, mine, `{"events":[]}`, http.StatusNoContent, ""},
		{"no token", "POST", events, "", `{}`, http.StatusUnauthorized, "missing bearer token"},
		{"wrong token", "POST", events, "not-a-token", `{}`, http.StatusUnauthorized, "invalid token"},
		{"expired token", "POST", events, short, `{}`, http.StatusUnauthorized, "token expired"},
		{"revoked token", "POST", events, revoked, `{}`, http.StatusUnauthorized, "invalid token"},
		{"other run's token", "POST", events, other, `{}`, http.StatusForbidden, "another run"},
		{"other run's token on a report", "POST", f.srv.URL + "/vet/v1/runs/run-1/report", other, `{}`, http.StatusForbidden, "another run"},
		{"other run's token downloading", "GET", f.srv.URL + "/vet/v1/runs/run-1/throughput?bytes=10", other, "", http.StatusForbidden, "another run"},
		{"other run's token uploading", "POST", f.srv.URL + "/vet/v1/runs/run-1/throughput", other, "xx", http.StatusForbidden, "another run"},
		{"expired token saying hello", "POST", hello, short, `{"protocol":1}`, http.StatusUnauthorized, "token expired"},
		{"wrong token saying hello", "POST", hello, "x", `{"protocol":1}`, http.StatusUnauthorized, "invalid token"},
		{"old protocol", "POST", hello, mine, `{"protocol":0}`, http.StatusBadRequest, "protocol version 0"},
		{"malformed JSON", "POST", events, mine, `{`, http.StatusBadRequest, "malformed JSON"},
		{"unknown kind", "POST", f.srv.URL + "/vet/v1/runs/run-1/secrets", mine, `{}`, http.StatusNotFound, "unknown record kind"},
		{"report for another run id", "POST", f.srv.URL + "/vet/v1/runs/run-1/report", mine, `{"run_id":"run-2"}`, http.StatusBadRequest, "names run"},
		{"bad byte count", "GET", f.srv.URL + "/vet/v1/runs/run-1/throughput?bytes=-1", mine, "", http.StatusBadRequest, "positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := raw(t, tc.method, tc.url, tc.token, tc.body)
			if resp.StatusCode != tc.code || !strings.Contains(body, tc.msg) {
				t.Errorf("%s %s = %d %q, want %d containing %q", tc.method, tc.url, resp.StatusCode, body, tc.code, tc.msg)
			}
			if tc.code == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
	// Nothing refused reached the backend.
	f.backend.mu.Lock()
	defer f.backend.mu.Unlock()
	if len(f.backend.msgs) != 1 || len(f.backend.hellos) != 0 {
		t.Errorf("backend got %d messages and %d hellos, want only the one with the run's own token", len(f.backend.msgs), len(f.backend.hellos))
	}
}

func TestClientErrors(t *testing.T) {
	f := newFixture(t)
	ctx := timeout(t)
	mine := f.issue(t, "run-1", time.Hour)

	if _, err := f.client("wrong").Hello(ctx, Hello{}); !errors.Is(err, ErrRefused) {
		t.Errorf("Hello(wrong token) error = %v, want ErrRefused", err)
	}
	other := f.client(f.issue(t, "run-2", time.Hour))
	other.RunID = "run-1"
	if err := other.Send(ctx, &Events{}); !errors.Is(err, ErrRefused) {
		t.Errorf("Send(other run's token) error = %v, want ErrRefused", err)
	}
	c := f.client(mine)
	if err := c.Send(ctx, &Events{}); err == nil {
		t.Error("Send before Hello succeeded, want an error")
	}
	c.RunID = "run-1"

	// Transient failures are retried; the run being over is not.
	f.backend.mu.Lock()
	f.backend.failures = []error{errors.New("database locked"), errors.New("database locked")}
	f.backend.mu.Unlock()
	if err := c.Send(ctx, &Events{Events: []Event{{Seq: 1, Kind: EventNote, Note: "hi"}}}); err != nil {
		t.Errorf("Send after two 500s = %v, want success on the third attempt", err)
	}
	f.backend.mu.Lock()
	f.backend.failures = []error{fmt.Errorf("run stopped by the operator: %w", ErrRunOver)}
	f.backend.mu.Unlock()
	if err := c.Send(ctx, &Events{}); !errors.Is(err, ErrGone) {
		t.Errorf("Send to a stopped run error = %v, want ErrGone", err)
	}
	// A server that never answers well gives up when the context ends.
	f.backend.mu.Lock()
	for i := 0; i < 1000; i++ {
		f.backend.failures = append(f.backend.failures, errors.New("down"))
	}
	f.backend.mu.Unlock()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := c.Send(short, &Events{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send to a failing backend error = %v, want the context's deadline", err)
	}
}

func TestBodyLimit(t *testing.T) {
	f := newFixture(t)
	mine := f.issue(t, "run-1", time.Hour)
	big := `{"events":[{"note":"` + strings.Repeat("x", maxMessage) + `"}]}`
	resp, body := raw(t, "POST", f.srv.URL+"/vet/v1/runs/run-1/events", mine, big)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized events = %d %q, want 413", resp.StatusCode, body)
	}
}

func TestThroughput(t *testing.T) {
	f := newFixture(t)
	c := f.client(f.issue(t, "run-1", time.Hour))
	c.RunID = "run-1"
	ctx := timeout(t)
	ifaces := []string{""}
	if os.Geteuid() == 0 {
		ifaces = append(ifaces, "lo") // SO_BINDTODEVICE needs CAP_NET_RAW
	} else {
		t.Log("not root: skipping the bound-to-lo case (SO_BINDTODEVICE needs CAP_NET_RAW)")
	}
	for _, iface := range ifaces {
		n, d, err := c.Download(ctx, iface, 200*time.Millisecond)
		if err != nil || n < 1<<20 || d < 150*time.Millisecond {
			t.Errorf("Download(%q) = %d bytes in %v, %v; want over 1 MiB in about 200 ms", iface, n, d, err)
		}
		n, d, err = c.Upload(ctx, iface, 200*time.Millisecond)
		if err != nil || n < 1<<20 || d < 150*time.Millisecond {
			t.Errorf("Upload(%q) = %d bytes in %v, %v; want over 1 MiB in about 200 ms", iface, n, d, err)
		}
	}
	if _, _, err := c.Download(ctx, "no-such-if0", 50*time.Millisecond); err == nil {
		t.Error("Download through a missing interface succeeded, want an error")
	}
	c.Token = "wrong"
	if _, _, err := c.Download(ctx, "", 50*time.Millisecond); !errors.Is(err, ErrRefused) {
		t.Errorf("Download(wrong token) error = %v, want ErrRefused", err)
	}
}

func TestTokens(t *testing.T) {
	tok := NewTokens()
	now := time.Now()
	a, err := tok.Issue("r", now.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 43 || strings.ContainsAny(a, "+/=") {
		t.Errorf("token %q is not 43 URL-safe base64 characters", a)
	}
	b, _ := tok.Issue("r", now.Add(time.Second))
	if a == b {
		t.Error("two tokens are equal")
	}
	ctx := context.Background()
	if run, err := tok.CheckToken(ctx, a, now); err != nil || run != "r" {
		t.Errorf("CheckToken(valid) = %q, %v; want r", run, err)
	}
	if _, err := tok.CheckToken(ctx, a, now.Add(time.Second)); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("CheckToken(at expiry) error = %v, want ErrTokenExpired", err)
	}
	if _, err := tok.CheckToken(ctx, a+"x", now); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("CheckToken(altered) error = %v, want ErrUnknownToken", err)
	}
	if h := HashToken("abc"); h != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("HashToken(abc) = %s, want its SHA-256", h)
	}
}
