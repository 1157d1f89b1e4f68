package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/services/api/wire"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
)

// fakeSupervisor is a small in-memory supervisor: fixed services, a log
// ring per service, followers woken on Append.
type fakeSupervisor struct {
	// mu guards the fields below.
	mu        sync.Mutex
	status    supervisor.Status
	lines     map[string][]supervisor.Line
	wake      chan struct{}
	restarted []string
}

func newFakeSupervisor() *fakeSupervisor {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &fakeSupervisor{
		status: supervisor.Status{Ready: true, Services: []supervisor.ServiceStatus{
			{Name: "mgmt", Enabled: true, State: supervisor.StateReady, Since: now, PID: 10},
			{Name: "dhcp", Enabled: true, State: supervisor.StateReady, Since: now, PID: 11},
		}},
		lines: map[string][]supervisor.Line{},
		wake:  make(chan struct{}),
	}
}

func (f *fakeSupervisor) Append(service string, texts ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range texts {
		f.lines[service] = append(f.lines[service], supervisor.Line{Seq: uint64(len(f.lines[service]) + 1), Stream: "stdout", Text: t,
			Time: time.Date(2026, 1, 1, 0, 0, len(f.lines[service]), 0, time.UTC)})
	}
	close(f.wake)
	f.wake = make(chan struct{})
}

func (f *fakeSupervisor) Status(context.Context) (supervisor.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, nil
}

func (f *fakeSupervisor) after(name string, since uint64) ([]supervisor.Line, chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []supervisor.Line
	for _, l := range f.lines[name] {
		if l.Seq > since {
			out = append(out, l)
		}
	}
	return out, f.wake
}

func (f *fakeSupervisor) Logs(_ context.Context, name string, since uint64) ([]supervisor.Line, error) {
	ls, _ := f.after(name, since)
	return ls, nil
}

func (f *fakeSupervisor) FollowLogs(ctx context.Context, name string, since uint64, fn func(supervisor.Line) error) error {
	for {
		ls, wake := f.after(name, since)
		for _, l := range ls {
			if err := fn(l); err != nil {
				return err
			}
			since = l.Seq
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

func (f *fakeSupervisor) Restart(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restarted = append(f.restarted, name)
	return nil
}

// recordingBanner remembers bans.
type recordingBanner struct {
	// mu guards bans.
	mu   sync.Mutex
	bans []netip.Addr
}

func (b *recordingBanner) Ban(a netip.Addr, _ time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bans = append(b.bans, a)
}

func (b *recordingBanner) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.bans)
}

// testServer is a Server behind a TLS httptest server.
type testServer struct {
	*Server
	t        *testing.T
	ts       *httptest.Server
	db       *store.Store
	sup      *fakeSupervisor
	banner   *recordingBanner
	stateDir string
	hc       *http.Client
}

type serverOpt func(*Options)

func newTestServer(t *testing.T, opts ...serverOpt) *testServer {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(context.Background(), store.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	sup, banner := newFakeSupervisor(), &recordingBanner{}
	o := Options{
		Store: db, Supervisor: sup, Config: config.Default(), StateDir: dir, Banner: banner,
		Logger:     slog.New(slog.NewTextHandler(t.Output(), nil)).With("component", "api"),
		BcryptCost: bcrypt.MinCost, PollInterval: 50 * time.Millisecond, Version: "test",
	}
	for _, f := range opts {
		f(&o)
	}
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	ts := httptest.NewTLSServer(s.Handler())
	t.Cleanup(func() { s.Close(); ts.Close() })
	return &testServer{Server: s, t: t, ts: ts, db: db, sup: sup, banner: banner, stateDir: dir, hc: ts.Client()}
}

// browser is a logged-in session.
type browser struct {
	cookie string
	csrf   string
}

// req describes one call.
type req struct {
	method, path string
	body         any // string: sent as is; nil: none; else JSON
	contentType  string
	token        string
	as           *browser
	noCSRF       bool
	header       map[string]string
}

type resp struct {
	code   int
	header http.Header
	body   []byte
}

func (r resp) errBody(t *testing.T) ErrorDetail {
	t.Helper()
	var e ErrorBody
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Errorf("body %q is not the error shape: %v", r.body, err)
	}
	return e.Error
}

func (ts *testServer) do(rq req) resp {
	ts.t.Helper()
	var body io.Reader
	ct := rq.contentType
	switch b := rq.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			ts.t.Fatal(err)
		}
		body = bytes.NewReader(j)
		if ct == "" {
			ct = "application/json"
		}
	}
	if ct == "" && body != nil {
		ct = "application/json"
	}
	r, err := http.NewRequest(rq.method, ts.ts.URL+rq.path, body)
	if err != nil {
		ts.t.Fatal(err)
	}
	if ct != "" && body != nil {
		r.Header.Set("Content-Type", ct)
	}
	if rq.token != "" {
		r.Header.Set("Authorization", "Bearer "+rq.token)
	}
	if rq.as != nil {
		r.Header.Set("Cookie", SessionCookie+"="+rq.as.cookie)
		if !rq.noCSRF {
			r.Header.Set("X-CSRF-Token", rq.as.csrf)
		}
	}
	for k, v := range rq.header {
		r.Header.Set(k, v)
	}
	res, err := ts.hc.Do(r)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", rq.method, rq.path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

// initialPassword reads the first-boot password file.
func (ts *testServer) initialPassword() string {
	ts.t.Helper()
	pw, err := ReadInitialPassword(ts.stateDir)
	if err != nil || pw == "" {
		ts.t.Fatalf("ReadInitialPassword = %q, %v", pw, err)
	}
	return pw
}

// login logs in and returns the session.
func (ts *testServer) login(user, password string) *browser {
	ts.t.Helper()
	// The UI sends X-CSRF-Token on every POST, login too (a trusted-network
	// caller needs it).
	r := ts.do(req{method: "POST", path: "/api/v1/session", body: wire.LoginRequest{User: user, Password: password}, header: map[string]string{"X-CSRF-Token": "none"}})
	if r.code != http.StatusCreated {
		ts.t.Fatalf("login %s = %d %s", user, r.code, r.body)
	}
	var s wire.Session
	json.Unmarshal(r.body, &s)
	for _, c := range r.header.Values("Set-Cookie") {
		if v, ok := strings.CutPrefix(c, SessionCookie+"="); ok {
			v, _, _ = strings.Cut(v, ";")
			return &browser{cookie: v, csrf: s.CSRFToken}
		}
	}
	ts.t.Fatalf("login %s: no session cookie in %v", user, r.header)
	return nil
}

// admin logs in as admin with the initial password.
func (ts *testServer) admin() *browser {
	ts.t.Helper()
	return ts.login(AdminUser, ts.initialPassword())
}

// userWithToken creates an account of role and returns a token of scope for it.
func (ts *testServer) userWithToken(name string, role, scope store.Role) string {
	ts.t.Helper()
	b := ts.newUser(ts.admin(), name, role)
	r := ts.do(req{method: "POST", path: "/api/v1/tokens", as: b, body: wire.NewToken{Name: "test", Scope: string(scope)}})
	if r.code != http.StatusCreated {
		ts.t.Fatalf("creating token for %s = %d %s", name, r.code, r.body)
	}
	var ct wire.CreatedToken
	json.Unmarshal(r.body, &ct)
	return ct.Secret
}

// testClock is a settable clock.
type testClock struct {
	// mu guards now.
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// loginFrom posts a login as if from remote (ip:port).
func (ts *testServer) loginFrom(remote, user, password string) *httptest.ResponseRecorder {
	ts.t.Helper()
	body := fmt.Sprintf(`{"user":%q,"password":%q}`, user, password)
	r := httptest.NewRequest("POST", "/api/v1/session", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	ts.Handler().ServeHTTP(w, r)
	return w
}

// newUser has admin session a create an account of role and logs it in.
func (ts *testServer) newUser(a *browser, name string, role store.Role) *browser {
	ts.t.Helper()
	if r := ts.do(req{method: "POST", path: "/api/v1/users", as: a, body: newUser{Name: name, Role: string(role), Password: "password-of-" + name}}); r.code != http.StatusCreated {
		ts.t.Fatalf("creating user %s = %d %s", name, r.code, r.body)
	}
	return ts.login(name, "password-of-"+name)
}
