package apiclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/services/api/wire"
)

func TestNormalizeURL(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		bad      bool
	}{
		{in: "https://kiln.lab/", want: "https://kiln.lab"},
		{in: " http://10.0.0.1:8080/api ", want: "http://10.0.0.1:8080"},
		{in: "kiln.lab", bad: true},
		{in: "ftp://kiln.lab", bad: true},
		{in: "https://", bad: true},
	} {
		got, err := NormalizeURL(tt.in)
		if tt.bad {
			if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--url") {
				t.Errorf("NormalizeURL(%q) = %q, %v; want an error naming --url wrapping ErrUsage", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestSameFingerprint(t *testing.T) {
	fp := Fingerprint([]byte("certificate"))
	if len(fp) != 95 {
		t.Fatalf("Fingerprint = %q, want 32 colon-separated bytes", fp)
	}
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{fp, fp, true},
		{fp, strings.ToLower(strings.ReplaceAll(fp, ":", "")), true},
		{fp, Fingerprint([]byte("other")), false},
		{"", "", false},
	} {
		if got := SameFingerprint(tt.a, tt.b); got != tt.want {
			t.Errorf("SameFingerprint(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfg", "credentials.json")
	c, err := LoadCredentials(path)
	if err != nil || c.Default != "" || c.Servers == nil {
		t.Fatalf("LoadCredentials(missing) = %+v, %v; want empty credentials", c, err)
	}
	c.Default = "https://kiln.lab"
	c.Servers[c.Default] = ServerCred{User: "admin", Token: "kiln_x", TokenID: 7, Fingerprint: "AB"}
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("saved file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("its directory: %v, mode %v; want 0700", err, fi.Mode().Perm())
	}
	got, err := LoadCredentials(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("LoadCredentials after Save (-saved +read):\n%s", diff)
	}
	os.WriteFile(path, []byte("{"), 0o600)
	if _, err := LoadCredentials(path); err == nil || !strings.Contains(err.Error(), "kiln login") {
		t.Errorf("LoadCredentials(broken) = %v, want an error saying to log in again", err)
	}
}

func TestOptionsClient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	o := Options{Credentials: path}
	if o.LoggedIn() {
		t.Error("LoggedIn with no credentials = true")
	}
	if _, err := o.Client(); !errors.Is(err, ErrAuth) {
		t.Errorf("Client with no credentials = %v, want ErrAuth", err)
	}
	c := Credentials{Default: "https://kiln.lab", Servers: map[string]ServerCred{"https://kiln.lab": {Token: "kiln_t"}}}
	c.Save(path)
	if !o.LoggedIn() {
		t.Error("LoggedIn after a login = false")
	}
	cl, err := o.Client()
	if err != nil || cl.Base() != "https://kiln.lab" {
		t.Errorf("Client = %v, %v; want the default appliance", cl, err)
	}
	o.URL = "https://other.lab/"
	if _, err := o.Client(); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "https://other.lab") {
		t.Errorf("Client of an appliance without a token = %v, want ErrAuth naming it", err)
	}
	o.URL = "other.lab"
	if _, err := o.Client(); !errors.Is(err, ErrUsage) {
		t.Errorf("Client with a bad --url = %v, want ErrUsage", err)
	}
}

// server answers each path with a fixed status and body, and records the
// last request's headers.
type server struct {
	mu   sync.Mutex // guards last
	last http.Header
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.last = r.Header.Clone()
	s.mu.Unlock()
	switch r.URL.Path {
	case "/api/v1/hosts/pc-01":
		fmt.Fprint(w, `{"name":"pc-01","macs":["52:54:00:00:00:01"],"created":"2026-01-02T03:04:05Z","updated":"2026-01-02T03:04:05Z"}`)
	case "/api/v1/hosts":
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprint(w, `{"error":{"code":"invalid","message":"name: taken","field":"name","details":[{"code":"invalid","message":"taken","field":"name"},{"code":"invalid","message":"bad MAC","field":"macs","line":3}]}}`)
	case "/api/v1/leases":
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":{"code":"unauthenticated","message":"no such token"}}`)
	case "/api/v1/forbidden":
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"error":{"code":"forbidden","message":"needs admin"}}`)
	case "/api/v1/plain":
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, "upstream down\n")
	default:
		http.NotFound(w, r)
	}
}

func TestClientErrors(t *testing.T) {
	srv := &server{}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c := New(ts.URL, "kiln_secret", ts.Client())
	ctx := context.Background()

	h, err := c.Host(ctx, "pc-01")
	if err != nil || h.Name != "pc-01" || len(h.MACs) != 1 || h.Created.IsZero() {
		t.Errorf("Host(pc-01) = %+v, %v", h, err)
	}
	if got := srv.last.Get("Authorization"); got != "Bearer kiln_secret" {
		t.Errorf("Authorization = %q, want the token", got)
	}
	for _, tt := range []struct {
		name string
		call func() error
		is   error
		want string
	}{
		{"not found", func() error { _, err := c.Host(ctx, "nope"); return err }, ErrNotFound, "404"},
		{"unauthorized", func() error { _, err := c.Leases(ctx, nil); return err }, ErrAuth, "no such token (run kiln login again)"},
		{"forbidden", func() error { return c.Do(ctx, "GET", "/api/v1/forbidden", nil, nil) }, ErrAuth, "needs admin"},
		{"every detail", func() error { _, err := c.CreateHost(ctx, wire.HostInput{Name: "x"}); return err }, nil, "  name: taken\n  line 3: macs: bad MAC"},
		{"not JSON", func() error { return c.Do(ctx, "GET", "/api/v1/plain", nil, nil) }, nil, "upstream down"},
	} {
		err := tt.call()
		if err == nil || tt.is != nil && !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q (wrapping %v)", tt.name, err, tt.want, tt.is)
		}
		if tt.is == nil && (errors.Is(err, ErrAuth) || errors.Is(err, ErrNotFound)) {
			t.Errorf("%s: error %v wraps ErrAuth or ErrNotFound", tt.name, err)
		}
	}
}

func TestPinnedTransport(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"site_name":"lab"}`) }))
	defer ts.Close()
	fp := Fingerprint(ts.Certificate().Raw)
	ctx := context.Background()

	var seen string
	login := New(ts.URL, "", &http.Client{Transport: PinnedTransport("127.0.0.1", "", func(f string, ca bool) { seen = f })})
	if i, err := login.Info(ctx); err != nil || i.SiteName != "lab" || seen != fp {
		t.Errorf("login's first call = %+v, %v, saw %q; want the site and fingerprint %s", i, err, seen, fp)
	}
	pinned := New(ts.URL, "", &http.Client{Transport: PinnedTransport("127.0.0.1", strings.ToLower(fp), nil)})
	if _, err := pinned.Info(ctx); err != nil {
		t.Errorf("Info with the right pinned fingerprint: %v", err)
	}
	wrong := New(ts.URL, "", &http.Client{Transport: PinnedTransport("127.0.0.1", Fingerprint([]byte("x")), nil)})
	if _, err := wrong.Info(ctx); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), fp) {
		t.Errorf("Info with a wrong pinned fingerprint = %v, want ErrAuth naming the real one", err)
	}
	none := New(ts.URL, "", &http.Client{Transport: PinnedTransport("127.0.0.1", "", nil)})
	if _, err := none.Info(ctx); err == nil || !strings.Contains(err.Error(), "kiln login") {
		t.Errorf("Info of a self-signed server with nothing pinned = %v, want an error saying to log in", err)
	}
}

func TestReadSSE(t *testing.T) {
	in := ": comment\nid: 1\nevent: line\ndata: a\ndata: b\n\nevent: ping\n\n\nid: 2\ndata: c\n\n"
	var got []Event
	if err := ReadSSE(strings.NewReader(in), func(e Event) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []Event{{ID: "1", Event: "line", Data: "a\nb"}, {Event: "ping"}, {ID: "2", Data: "c"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ReadSSE (-want +got):\n%s", diff)
	}
	stop := errors.New("stop")
	if err := ReadSSE(strings.NewReader(in), func(Event) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("ReadSSE with fn failing = %v, want fn's error", err)
	}
}

// TestFollowResumes ends the stream after each event and checks that the
// next request resumes after the last id.
func TestFollowResumes(t *testing.T) {
	var mu sync.Mutex // guards asked
	var asked []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.RequestURI()+" last="+r.Header.Get("Last-Event-ID"))
		n := len(asked)
		mu.Unlock()
		if n == 3 {
			http.NotFound(w, r) // the service went away: stop
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "id: %d\nevent: line\ndata: line %d\n\n", n, n)
	}))
	defer ts.Close()
	c := New(ts.URL, "", ts.Client())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var lines []string
	err := c.Follow(ctx, "/logs?tail=5", func(last string) string { return "/logs" }, func(e Event) error {
		lines = append(lines, e.Data)
		return nil
	})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Follow = %v, want the 404 as ErrNotFound", err)
	}
	if want := []string{"line 1", "line 2"}; !cmp.Equal(lines, want) {
		t.Errorf("events = %q, want %q", lines, want)
	}
	if want := []string{"/logs?tail=5 last=", "/logs last=1", "/logs last=2"}; !cmp.Equal(asked, want) {
		t.Errorf("requests = %q, want %q", asked, want)
	}
}

func TestTunnel(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != wire.TunnelProtocol || r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"error":{"code":"forbidden","message":"no tunnel for you"}}`)
			return
		}
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", wire.TunnelProtocol)
		rw.Flush()
		b, _ := io.ReadAll(rw) // until the client half-closes
		fmt.Fprintf(conn, "echo %s", b)
	}))
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	if err := New(ts.URL, "tok", ts.Client()).Tunnel(ctx, "/tunnel", strings.NewReader("ping"), &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "echo ping" {
		t.Errorf("tunnel carried back %q, want %q", out.String(), "echo ping")
	}
	if err := New(ts.URL, "bad", ts.Client()).Tunnel(ctx, "/tunnel", strings.NewReader(""), io.Discard); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "no tunnel") {
		t.Errorf("Tunnel refused = %v, want ErrAuth with the API's message", err)
	}
}
