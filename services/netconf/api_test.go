package netconf

import (
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// serveAPI serves Handler on a unix socket in a temp dir; the Manager reads
// this process's links (read-only) and the Guard applies with a fake.
func serveAPI(t *testing.T) (*Client, *fakeNet, *fakeClock, string) {
	t.Helper()
	sys, err := OpenSystem(netns.None())
	if err != nil {
		t.Skipf("no rtnetlink: %v", err)
	}
	t.Cleanup(sys.Close)
	m := NewManager(t.Context(), ManagerOptions{System: sys})
	n := &fakeNet{}
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g := NewGuard(n.apply, clk, nil)
	g.Start(t.Context(), named("old"))
	dir := t.TempDir()
	sock := filepath.Join(dir, SocketName)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: Handler(m, g)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return NewClient(sock), n, clk, dir
}

func TestAPI(t *testing.T) {
	cl, n, clk, dir := serveAPI(t)
	ctx := t.Context()
	st, err := cl.Status(ctx)
	if err != nil || len(st.Links) == 0 || st.Try != nil {
		t.Fatalf("Status() = %+v, %v; want the links and no trial", st, err)
	}
	if _, err := cl.Try(ctx, []byte("network:\n  interfaces:\n    - {name: x, role: admin}\n"), 0); err == nil ||
		!strings.Contains(err.Error(), "network.interfaces[0].role: unknown role \"admin\"") {
		t.Errorf("Try(invalid) = %v, want the field named", err)
	}
	if _, err := cl.Try(ctx, []byte("hostname: new\n"), 90*time.Second); err != nil {
		t.Fatalf("Try = %v", err)
	}
	if st, _ := cl.Status(ctx); st.Try == nil || st.Try.RevertsIn != 90*time.Second {
		t.Errorf("Status().Try = %+v, want 90s left", st.Try)
	}
	if _, err := cl.Try(ctx, []byte("hostname: other\n"), 0); err == nil || !strings.Contains(err.Error(), "pending") {
		t.Errorf("second Try = %v, want a pending-trial error", err)
	}
	clk.Advance(90 * time.Second)
	if err := cl.Confirm(ctx); err == nil || !strings.Contains(err.Error(), "no trial") {
		t.Errorf("Confirm after the revert = %v, want no trial", err)
	}
	if got := strings.Join(n.log(), " "); got != "old new old" {
		t.Errorf("applied %q, want \"old new old\"", got)
	}
	if _, err := cl.Try(ctx, []byte("hostname: x\n"), 500*time.Millisecond); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("Try with a 500ms timeout = %v, want it refused", err)
	}

	// The management API's handler proxies the same status.
	rec := httptest.NewRecorder()
	StatusHandler(dir).ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/api/v1/network", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"links"`) {
		t.Errorf("StatusHandler = %d %s, want 200 with links", rec.Code, rec.Body.String())
	}
	// Without the service it reads the links itself.
	rec = httptest.NewRecorder()
	StatusHandler(t.TempDir()).ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/api/v1/network", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"managed": false`) {
		t.Errorf("StatusHandler without netconf = %d %s, want 200 unmanaged", rec.Code, rec.Body.String())
	}
}
