package httpboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/services/internal/bootnonce"
)

func testLogger(t testing.TB) *slog.Logger {
	return testlog.New(t, slog.LevelDebug).With("component", "httpboot")
}

// fakeHosts is a map-backed Hosts.
type fakeHosts struct {
	byMAC  map[string]Host
	leases map[netip.Addr]string // address → MAC of its current lease
	err    error
}

func (f fakeHosts) LeasedTo(_ context.Context, ip netip.Addr) (string, error) {
	return f.leases[ip], f.err
}

func (f fakeHosts) HostByMAC(_ context.Context, mac string) (Host, error) {
	if f.err != nil {
		return Host{}, f.err
	}
	h, ok := f.byMAC[mac]
	if !ok {
		return Host{}, fmt.Errorf("MAC %s: %w", mac, ErrUnknownHost)
	}
	return h, nil
}

// recorder is an in-memory EventSink.
type recorder struct {
	// mu guards events.
	mu     sync.Mutex
	events []Event
}

func (r *recorder) AddBootEvent(_ context.Context, ev Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

func (r *recorder) take() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events = nil
	return ev
}

const (
	macA = "52:54:00:00:00:0a"
	macB = "52:54:00:00:00:0b"
	macC = "52:54:00:00:00:0c"
)

// testHosts: node-a holds the lease of 10.0.0.50 (get's address) and of
// 127.0.0.1 (the loopback tests), node-c has the reservation 10.0.0.52,
// node-b neither (it is known by its neighbour entry, 10.0.0.60).
var testHosts = fakeHosts{byMAC: map[string]Host{
	macA: {Name: "node-a", Profile: ProfileVet, Token: "token-a"},
	macB: {Name: "node-b", Profile: ProfileLocal, Token: "token-b"},
	macC: {Name: "node-c", Profile: ProfileVet, Token: "token-c", Reserved: netip.MustParseAddr("10.0.0.52")},
}, leases: map[netip.Addr]string{netip.MustParseAddr("10.0.0.50"): macA, netip.MustParseAddr("127.0.0.1"): macA}}

// filesRoot builds an artifact root: a kernel, a subdirectory, a FIFO and a
// symlink out of the root.
func filesRoot(t *testing.T) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "files")
	kernel := bytes.Repeat([]byte("0123456789abcdef"), 64*1024) // 1 MiB
	for _, err := range []error{
		os.MkdirAll(filepath.Join(root, "vet"), 0o755),
		os.WriteFile(filepath.Join(root, "vet", "vmlinuz"), kernel, 0o644),
		os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o644),
		os.Symlink("../secret", filepath.Join(root, "escape")),
		os.Symlink("vet/vmlinuz", filepath.Join(root, "alias")),
		syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return root, kernel
}

// fakeRuns gives each host in tokens a run token; others have no run.
type fakeRuns map[string]string

func (f fakeRuns) RunToken(_ context.Context, host string) (string, error) {
	if tok, ok := f[host]; ok {
		return tok, nil
	}
	return "", fmt.Errorf("%w queued for %s; start one in the UI", ErrNoRun, host)
}

func newTestServer(t *testing.T, hosts Hosts) (*Server, *recorder, []byte) {
	t.Helper()
	root, kernel := filesRoot(t)
	rec := &recorder{}
	s, err := New(Options{FilesRoot: root, Now: func() time.Time { return time.Unix(1_700_000_000, 0) },
		Nonces: bootnonce.NewRedeemer(testNonceKey, 0, time.Unix(1_700_000_000, 0)),
		Runs:   fakeRuns{"node-a": "run-token-a"}, Neighbor: func(ip netip.Addr) string {
			if ip == netip.MustParseAddr("10.0.0.60") {
				return macB
			}
			return ""
		}}, hosts, rec, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rec, kernel
}

func get(s http.Handler, method, target string, hdr ...string) *http.Response {
	return getFrom(s, "10.0.0.50:40000", method, target, hdr...)
}

func getFrom(s http.Handler, remote, method, target string, hdr ...string) *http.Response {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w.Result()
}

func body(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// wantScripts renders the scripts newTestServer serves node-a (with its
// run's token) and node-b.
func wantScripts(t *testing.T) (vetA, localB []byte) {
	t.Helper()
	hostA := testHosts.byMAC[macA]
	hostA.RunToken = "run-token-a"
	vetA, err := RenderScript(hostA, macA, "http://example.com", DefaultProfiles())
	if err != nil {
		t.Fatal(err)
	}
	localB, err = RenderScript(testHosts.byMAC[macB], macB, "http://example.com", DefaultProfiles())
	if err != nil {
		t.Fatal(err)
	}
	return vetA, localB
}

func TestScripts(t *testing.T) {
	s, rec, _ := newTestServer(t, testHosts)
	denied := func(mac string) string {
		return string(RenderDenied("no network boot for " + mac + ": unknown machine or wrong token"))
	}
	vetA, localB := wantScripts(t)
	notYours := func(mac, from string) string {
		return string(RenderDenied("no network boot for " + mac + " from " + from + ": a script goes only to the address kiln leased or reserved for its machine"))
	}
	for _, tc := range []struct {
		name, target string
		from         string // remote address; default 10.0.0.50
		wantBody     string
		wantEvent    Event
	}{
		{"owner with token", "/boot/" + macA + ".ipxe?token=token-a", "", string(vetA),
			Event{MAC: macA, Host: "node-a", Kind: KindScript, Detail: "profile vet"}},
		{"hyphen notation", "/boot/52-54-00-00-00-0A.ipxe?token=token-a", "", string(vetA),
			Event{MAC: macA, Host: "node-a", Kind: KindScript, Detail: "profile vet"}},
		{"wrong token", "/boot/" + macA + ".ipxe?token=token-x", "", denied(macA),
			Event{MAC: macA, Host: "node-a", Kind: KindDenied, Detail: "wrong token"}},
		{"another host's token", "/boot/" + macA + ".ipxe?token=token-b", "", denied(macA),
			Event{MAC: macA, Host: "node-a", Kind: KindDenied, Detail: "wrong token"}},
		{"no token", "/boot/" + macA + ".ipxe", "", denied(macA),
			Event{MAC: macA, Host: "node-a", Kind: KindDenied, Detail: "no token in URL"}},
		{"unknown MAC", "/boot/52:54:00:00:00:ff.ipxe?token=token-a", "", denied("52:54:00:00:00:ff"),
			Event{MAC: "52:54:00:00:00:ff", Kind: KindDenied, Detail: "unknown MAC"}},
		{"owner's token from another address", "/boot/" + macA + ".ipxe?token=token-a", "10.0.0.99:40000", notYours(macA, "10.0.0.99"),
			Event{MAC: macA, Host: "node-a", Kind: KindDenied, Detail: "requested from 10.0.0.99, not the MAC's lease or reservation"}},
		{"another host's token and MAC from a leased address", "/boot/" + macB + ".ipxe?token=token-b", "", notYours(macB, "10.0.0.50"),
			Event{MAC: macB, Host: "node-b", Kind: KindDenied, Detail: "requested from 10.0.0.50, not the MAC's lease or reservation"}},
		{"neighbour entry", "/boot/" + macB + ".ipxe?token=token-b", "10.0.0.60:40000", string(localB),
			Event{MAC: macB, Host: "node-b", Kind: KindScript, Detail: "profile local"}},
		{"reservation", "/boot/" + macC + ".ipxe?token=token-c", "10.0.0.52:40000",
			string(RenderDenied("no vetting run queued for node-c; start one in the UI")),
			Event{MAC: macC, Host: "node-c", Kind: KindDenied, Detail: "no vetting run"}},
		{"reserved host from elsewhere", "/boot/" + macC + ".ipxe?token=token-c", "", notYours(macC, "10.0.0.50"),
			Event{MAC: macC, Host: "node-c", Kind: KindDenied, Detail: "requested from 10.0.0.50, not the MAC's lease or reservation"}},
		{"vet host without a run", "/boot/" + macC + ".ipxe?token=token-c", "10.0.0.52:40000",
			string(RenderDenied("no vetting run queued for node-c; start one in the UI")),
			Event{MAC: macC, Host: "node-c", Kind: KindDenied, Detail: "no vetting run"}},
		{"malformed MAC", "/boot/not-a-mac.ipxe?token=token-a", "",
			string(RenderDenied("this URL does not name a MAC address (use /boot/${net0/mac}.ipxe)")),
			Event{Kind: KindDenied, Detail: "malformed MAC in URL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := tc.from
			if from == "" {
				from = "10.0.0.50:40000"
			}
			resp := getFrom(s, from, http.MethodGet, "http://example.com"+tc.target)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s status = %d, want 200", tc.target, resp.StatusCode)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("GET %s Cache-Control = %q, want no-store", tc.target, got)
			}
			if diff := cmp.Diff(tc.wantBody, body(resp)); diff != "" {
				t.Errorf("GET %s body mismatch (-want +got):\n%s", tc.target, diff)
			}
			tc.wantEvent.Time = time.Unix(1_700_000_000, 0)
			want := []Event{tc.wantEvent}
			if diff := cmp.Diff(want, rec.take(), cmpopts.IgnoreFields(Event{}, "Client")); diff != "" {
				t.Errorf("GET %s events mismatch (-want +got):\n%s", tc.target, diff)
			}
		})
	}
}

var testNonceKey = bootnonce.NewKey(bytes.Repeat([]byte{9}, 32))

// mint is the nonce the DHCP service would put in the ACK of exchange xid
// (a one-byte stand-in) to mac for addr ("": a proxy offer, no address),
// minted at the test clock plus age.
func mint(xid byte, mac, addr string, age time.Duration) string {
	hw, _ := net.ParseMAC(mac)
	ex := bootnonce.Exchange{XID: [4]byte{0, 0, 0, xid}, MAC: hw}
	if addr != "" {
		ex.Addr = netip.MustParseAddr(addr)
	}
	return testNonceKey.Mint(ex, time.Unix(1_700_000_000, 0).Add(age))
}

// TestScriptNonces: a script URL from DHCP carries the exchange's nonce
// instead of the host's token. The cases run in order against one server:
// a nonce is served once, to its machine, before it expires; a refusal for
// another reason does not use it up.
func TestScriptNonces(t *testing.T) {
	s, rec, _ := newTestServer(t, testHosts)
	vetA, localB := wantScripts(t)
	denied := func(msg string) string { return string(RenderDenied(msg)) }
	usedUp := denied("no network boot for " + macA + ": this boot URL is used up or expired (each DHCP exchange gives one script); reboot the machine to try again")
	wrong := func(mac string) string {
		return denied("no network boot for " + mac + ": unknown machine or wrong token")
	}
	n1, n2 := mint(1, macA, "10.0.0.50", 0), mint(2, macA, "10.0.0.50", 0)
	served := func(mac, host, profile string) Event {
		return Event{MAC: mac, Host: host, Kind: KindScript, Detail: "profile " + profile}
	}
	refused := func(mac, host, detail string) Event {
		return Event{MAC: mac, Host: host, Kind: KindDenied, Detail: detail}
	}
	for _, tc := range []struct {
		name, mac, nonce, from string
		wantBody               string
		wantEvent              Event
	}{
		{"its machine", macA, n1, "10.0.0.50", string(vetA), served(macA, "node-a", "vet")},
		{"again", macA, n1, "10.0.0.50", usedUp, refused(macA, "node-a", "nonce refused: nonce already used (xid 00000001 for 10.0.0.50, expires 22:15:20)")},
		{"the same xid after a reboot: a new exchange", macA, mint(1, macA, "10.0.0.50", 30*time.Second), "10.0.0.50", string(vetA), served(macA, "node-a", "vet")},
		{"from another address", macA, n2, "10.0.0.51",
			denied("no network boot for " + macA + " from 10.0.0.51: this boot URL was handed out for another address"),
			refused(macA, "node-a", "nonce refused: nonce redeemed from another address (xid 00000002 for 10.0.0.50, expires 22:15:20)")},
		{"then from its machine", macA, n2, "10.0.0.50", string(vetA), served(macA, "node-a", "vet")},
		{"expired", macA, mint(3, macA, "10.0.0.50", -bootnonce.Lifetime-time.Second), "10.0.0.50", usedUp,
			refused(macA, "node-a", "nonce refused: nonce expired (xid 00000003 for 10.0.0.50, expires 22:13:19)")},
		{"minted before the server started", macA, mint(4, macA, "10.0.0.50", -time.Second), "10.0.0.50", usedUp,
			refused(macA, "node-a", "nonce refused: nonce older than this service's memory of used nonces (xid 00000004 for 10.0.0.50, expires 22:15:19)")},
		{"another MAC's nonce", macB, mint(5, macA, "10.0.0.60", 0), "10.0.0.60", wrong(macB),
			refused(macB, "node-b", "nonce refused: nonce not minted by this appliance for this MAC")},
		{"minted with another key", macA, bootnonce.NewKey(bytes.Repeat([]byte{1}, 32)).Mint(bootnonce.Exchange{XID: [4]byte{6}, MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0a}, Addr: netip.MustParseAddr("10.0.0.50")}, time.Unix(1_700_000_000, 0)),
			"10.0.0.50", wrong(macA), refused(macA, "node-a", "nonce refused: nonce not minted by this appliance for this MAC")},
		{"the host's token as a nonce", macA, "token-a", "10.0.0.50", wrong(macA), refused(macA, "node-a", "nonce refused: malformed nonce")},
		{"bound to an address that is not the MAC's", macA, mint(7, macA, "10.0.0.99", 0), "10.0.0.99",
			denied("no network boot for " + macA + " from 10.0.0.99: a script goes only to the address kiln leased or reserved for its machine"),
			refused(macA, "node-a", "requested from 10.0.0.99, not the MAC's lease or reservation")},
		{"proxy offer's nonce (no address) from the neighbour entry", macB, mint(8, macB, "", 0), "10.0.0.60", string(localB), served(macB, "node-b", "local")},
		{"proxy offer's nonce from elsewhere", macB, mint(9, macB, "", 0), "10.0.0.61",
			denied("no network boot for " + macB + " from 10.0.0.61: a script goes only to the address kiln leased or reserved for its machine"),
			refused(macB, "node-b", "requested from 10.0.0.61, not the MAC's lease or reservation")},
		{"then from the neighbour entry", macB, mint(9, macB, "", 0), "10.0.0.60", string(localB), served(macB, "node-b", "local")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := "/boot/" + tc.mac + ".ipxe?nonce=" + url.QueryEscape(tc.nonce)
			resp := getFrom(s, tc.from+":40000", http.MethodGet, "http://example.com"+target)
			if diff := cmp.Diff(tc.wantBody, body(resp)); diff != "" {
				t.Errorf("GET %s from %s body mismatch (-want +got):\n%s", target, tc.from, diff)
			}
			tc.wantEvent.Time = time.Unix(1_700_000_000, 0)
			if diff := cmp.Diff([]Event{tc.wantEvent}, rec.take(), cmpopts.IgnoreFields(Event{}, "Client")); diff != "" {
				t.Errorf("GET %s from %s events mismatch (-want +got):\n%s", target, tc.from, diff)
			}
		})
	}

	// A server without a Redeemer opens scripts with tokens only.
	s.opts.Nonces = nil
	if got := body(getFrom(s, "10.0.0.50:40000", http.MethodGet, "/boot/"+macA+".ipxe?nonce="+mint(10, macA, "10.0.0.50", 0))); got != wrong(macA) {
		t.Errorf("GET with a nonce from a server without a Redeemer = %q, want %q", got, wrong(macA))
	}
}

func TestScriptStoreError(t *testing.T) {
	s, _, _ := newTestServer(t, fakeHosts{err: errors.New("database is locked")})
	resp := get(s, http.MethodGet, "/boot/"+macA+".ipxe?token=token-a")
	if got := body(resp); resp.StatusCode != 200 || !strings.Contains(got, "cannot read its machine database") || !strings.HasSuffix(got, "exit 1\n") {
		t.Errorf("GET script with a failing store = %d %q, want 200 and a falling-through script", resp.StatusCode, got)
	}
}

func TestDefaultMenu(t *testing.T) {
	s, _, _ := newTestServer(t, testHosts)
	resp := get(s, http.MethodGet, "http://10.0.0.1:8080/boot/default.ipxe")
	want, _ := RenderDefault("http://10.0.0.1:8080")
	if got := body(resp); resp.StatusCode != 200 || got != string(want) {
		t.Errorf("GET /boot/default.ipxe = %d %q, want 200 %q", resp.StatusCode, got, want)
	}
}

func TestFiles(t *testing.T) {
	s, rec, kernel := newTestServer(t, testHosts)
	for _, tc := range []struct {
		name, method, target string
		hdr                  []string
		wantStatus           int
		wantBody             []byte
		wantHeader           map[string]string
		wantEvent            bool
	}{
		{"whole file", "GET", "/files/vet/vmlinuz?mac=" + macA, nil, 200, kernel,
			map[string]string{"Content-Length": "1048576", "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}, true},
		{"head", "HEAD", "/files/vet/vmlinuz", nil, 200, nil,
			map[string]string{"Content-Length": "1048576"}, false},
		{"range middle", "GET", "/files/vet/vmlinuz", []string{"Range", "bytes=100-199"}, 206, kernel[100:200],
			map[string]string{"Content-Length": "100", "Content-Range": "bytes 100-199/1048576"}, false},
		{"range from 0 is a download", "GET", "/files/vet/vmlinuz", []string{"Range", "bytes=0-9"}, 206, kernel[:10],
			map[string]string{"Content-Length": "10"}, true},
		{"range unsatisfiable", "GET", "/files/vet/vmlinuz", []string{"Range", "bytes=2000000-"}, 416, nil, nil, false},
		{"symlink inside root", "GET", "/files/alias", nil, 200, kernel, nil, true},
		{"symlink out of root", "GET", "/files/escape", nil, 404, nil, nil, false},
		{"dotdot", "GET", "/files/vet/../vet/vmlinuz", nil, 404, nil, nil, false},
		{"encoded dotdot", "GET", "/files/%2e%2e/secret", nil, 404, nil, nil, false},
		{"double slash", "GET", "/files//vet/vmlinuz", nil, 404, nil, nil, false},
		{"directory", "GET", "/files/vet", nil, 404, nil, nil, false},
		{"directory slash", "GET", "/files/vet/", nil, 404, nil, nil, false},
		{"fifo", "GET", "/files/fifo", nil, 404, nil, nil, false},
		{"root", "GET", "/files/", nil, 404, nil, nil, false},
		{"post", "POST", "/files/vet/vmlinuz", nil, 405, nil, map[string]string{"Allow": "GET, HEAD"}, false},
		{"elsewhere", "GET", "/etc/passwd", nil, 404, nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan *http.Response, 1)
			go func() { done <- get(s, tc.method, tc.target, tc.hdr...) }()
			var resp *http.Response
			select {
			case resp = <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("%s %s blocked for 5s", tc.method, tc.target)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("%s %s status = %d, want %d", tc.method, tc.target, resp.StatusCode, tc.wantStatus)
			}
			if loc := resp.Header.Get("Location"); loc != "" {
				t.Errorf("%s %s redirects to %q, want no redirects", tc.method, tc.target, loc)
			}
			b, _ := io.ReadAll(resp.Body)
			if tc.wantBody != nil && !bytes.Equal(b, tc.wantBody) {
				t.Errorf("%s %s body is %d bytes, want %d matching bytes", tc.method, tc.target, len(b), len(tc.wantBody))
			}
			for k, v := range tc.wantHeader {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s %s header %s = %q, want %q", tc.method, tc.target, k, got, v)
				}
			}
			events := rec.take()
			if got := len(events) == 1; got != tc.wantEvent || len(events) > 1 {
				t.Errorf("%s %s stored %d events %+v, want event %v", tc.method, tc.target, len(events), events, tc.wantEvent)
			}
			if tc.name == "whole file" && len(events) == 1 {
				if events[0].MAC != macA || events[0].Kind != KindFile || events[0].Detail != "vet/vmlinuz" {
					t.Errorf("download event = %+v, want MAC %s kind %s detail vet/vmlinuz", events[0], macA, KindFile)
				}
			}
		})
	}
}

// TestCurlLoopback drives a real server over loopback with curl.
func TestCurlLoopback(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (apt-get install curl)")
	}
	s, _, kernel := newTestServer(t, testHosts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, func() { close(ready) }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return within 10s of cancel")
		}
	})
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("HTTP boot server not ready within 5s")
	}
	base := "http://" + ln.Addr().String()

	curl := func(args ...string) (string, []byte) {
		t.Helper()
		dir := t.TempDir()
		out := filepath.Join(dir, "body")
		cctx, ccancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer ccancel()
		all := append([]string{"-sS", "--max-time", "10", "-o", out, "-D", "-"}, args...)
		hdr, err := exec.CommandContext(cctx, "curl", all...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", all, err)
		}
		b, _ := os.ReadFile(out)
		return string(hdr), b
	}

	t.Run("range", func(t *testing.T) {
		hdr, b := curl("-r", "1000-1999", base+"/files/vet/vmlinuz")
		if !strings.Contains(hdr, " 206 ") || !bytes.Equal(b, kernel[1000:2000]) {
			t.Errorf("curl -r 1000-1999 = %q, %d bytes; want 206 and the 1000 matching bytes", firstLine(hdr), len(b))
		}
		if !strings.Contains(strings.ToLower(hdr), "content-length: 1000") {
			t.Errorf("curl -r 1000-1999 headers lack Content-Length: 1000:\n%s", hdr)
		}
	})
	t.Run("whole", func(t *testing.T) {
		hdr, b := curl(base + "/files/vet/vmlinuz?mac=" + macA)
		if !strings.Contains(hdr, " 200 ") || !bytes.Equal(b, kernel) {
			t.Errorf("curl whole kernel = %q, %d bytes; want 200 and %d matching bytes", firstLine(hdr), len(b), len(kernel))
		}
	})
	t.Run("path escape", func(t *testing.T) {
		hdr, _ := curl("--path-as-is", base+"/files/../../etc/passwd")
		if !strings.Contains(hdr, " 404 ") {
			t.Errorf("curl --path-as-is /files/../../etc/passwd = %q, want 404", firstLine(hdr))
		}
	})
	t.Run("script", func(t *testing.T) {
		hdr, b := curl(base + "/boot/" + macA + ".ipxe?token=token-a")
		h := testHosts.byMAC[macA]
		h.RunToken = "run-token-a"
		want, _ := RenderScript(h, macA, base, DefaultProfiles())
		if !strings.Contains(hdr, " 200 ") || string(b) != string(want) {
			t.Errorf("curl script = %q\n%s\nwant 200\n%s", firstLine(hdr), b, want)
		}
	})
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(l)
}

// TestIPXEFiles serves the iPXE binaries under /ipxe/ for UEFI HTTP boot
// clients, with the same path rules as /files/.
func TestIPXEFiles(t *testing.T) {
	files, _ := filesRoot(t)
	ipxe := t.TempDir()
	bin := bytes.Repeat([]byte("MZ"), 1000)
	if err := os.WriteFile(filepath.Join(ipxe, "ipxe.efi"), bin, 0o644); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	s, err := New(Options{FilesRoot: files, IPXERoot: ipxe}, testHosts, rec, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp := get(s, http.MethodGet, "/ipxe/ipxe.efi")
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || !bytes.Equal(b, bin) || resp.Header.Get("Content-Length") != "2000" {
		t.Errorf("GET /ipxe/ipxe.efi = %d with %d bytes, want 200 with the 2000-byte binary", resp.StatusCode, len(b))
	}
	if evs := rec.take(); len(evs) != 1 || evs[0].Detail != "ipxe/ipxe.efi" {
		t.Errorf("GET /ipxe/ipxe.efi stored events %+v, want one for ipxe/ipxe.efi", evs)
	}
	for _, target := range []string{"/ipxe/../files/vet/vmlinuz", "/ipxe/vet/vmlinuz", "/ipxe/"} {
		if resp := get(s, http.MethodGet, target); resp.StatusCode != 404 {
			t.Errorf("GET %s = %d, want 404", target, resp.StatusCode)
		}
	}
	noIPXE, _, _ := newTestServer(t, testHosts)
	if resp := get(noIPXE, http.MethodGet, "/ipxe/ipxe.efi"); resp.StatusCode != 404 {
		t.Errorf("GET /ipxe/ipxe.efi without IPXERoot = %d, want 404", resp.StatusCode)
	}
	if _, err := New(Options{FilesRoot: files, IPXERoot: filepath.Join(ipxe, "missing")}, testHosts, nil, testLogger(t)); err == nil {
		t.Errorf("New with a missing IPXERoot = nil error, want one naming provisioning.tftp.root")
	}
}

// TestDisklessImage serves the appliance's own diskless client image under
// /files/diskless/, unless the files root has the file (the operator's wins).
func TestDisklessImage(t *testing.T) {
	files, _ := filesRoot(t)
	img := t.TempDir()
	for name, data := range map[string]string{"vmlinuz": "image kernel", "initrd": "image initrd"} {
		if err := os.WriteFile(filepath.Join(img, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(files, "diskless"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, "diskless", "initrd"), []byte("operator initrd"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{FilesRoot: files, DisklessImageRoot: img}, testHosts, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for target, want := range map[string]string{"/files/diskless/vmlinuz": "image kernel", "/files/diskless/initrd": "operator initrd"} {
		resp := get(s, http.MethodGet, target)
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != want {
			t.Errorf("GET %s = %d %q, want 200 %q", target, resp.StatusCode, b, want)
		}
	}
	for _, target := range []string{"/files/diskless/../diskless/vmlinuz", "/files/diskless/missing", "/files/diskless/"} {
		if resp := get(s, http.MethodGet, target); resp.StatusCode != 404 {
			t.Errorf("GET %s = %d, want 404", target, resp.StatusCode)
		}
	}
	if _, err := New(Options{FilesRoot: files, DisklessImageRoot: filepath.Join(img, "missing")}, testHosts, nil, testLogger(t)); err == nil {
		t.Error("New with a missing DisklessImageRoot = nil error, want one")
	}
}
