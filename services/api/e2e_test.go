package api_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/store"
)

// TestUIEndToEnd drives the web UI in headless Chromium against a real
// "kiln serve": first-boot password → log in → register a host (with an
// inline validation error first) → see it listed → see a boot event and a
// lease written to the store arrive live over SSE. Screenshots go to
// out/screenshots/.
func TestUIEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end UI test skipped in -short mode")
	}
	browser := findChromium()
	if browser == "" {
		t.Skip("chromium is not installed (apt-get install -y chromium; make deps installs it)")
	}
	root := repoRoot(t)
	shots := filepath.Join(root, "out", "screenshots")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	kiln := kilnBinary(t, root)

	// kiln serve on free loopback ports, only mgmt enabled.
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	httpsPort, httpPort := freePort(t), freePort(t)
	cfg := filepath.Join(dir, "kiln.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("hostname: e2e\nmanagement: {https_port: %d, http_port: %d, listen: 127.0.0.1}\n", httpsPort, httpPort)), 0o644)
	out := startServe(t, kiln, cfg, state)
	if !strings.Contains(out, "kiln: admin password: ") || !strings.Contains(out, "kiln: management certificate sha256 ") {
		t.Errorf("kiln serve's output lacks the first-login lines:\n%s", out)
	}
	password, err := api.ReadInitialPassword(state)
	if err != nil || password == "" {
		t.Fatalf("reading the first-boot password: %q, %v", password, err)
	}
	t.Logf("first-boot password from %s", api.InitialPasswordPath(state))
	base := "https://127.0.0.1:" + strconv.Itoa(httpsPort)

	// Headless Chromium, flags safe as root and quiet on the network.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(filepath.Join(dir, "chromium")), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors", true), // kiln's self-signed certificate
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelTab()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			shot(t, ctx, shots, "failed-"+name)
			t.Fatalf("%s: %v\nkiln serve output:\n%s", name, err, out)
		}
	}
	waitFor := func(name, js string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			shot(t, ctx, shots, "failed-"+name)
			t.Fatalf("waiting for %s (%s): %v", name, js, err)
		}
	}
	setField := func(id, value string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const e = document.getElementById(%q); e.value = %q; e.dispatchEvent(new Event('input', {bubbles: true})); return true; })()`, id, value))(ctx, tg)
			return err
		})
	}

	// First login with the first-boot password.
	step("open the login page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#login-password")))
	shot(t, ctx, shots, "01-login")
	step("log in", chromedp.SendKeys(chromedp.CSS("#login-password"), password), chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#services-table")))
	waitFor("the first-boot password notice", `!document.getElementById('notice').hidden && document.getElementById('notice').textContent.includes('first-boot password')`)
	waitFor("the live event stream", `document.getElementById('live').classList.contains('on')`)
	shot(t, ctx, shots, "02-dashboard")

	// Register a host: a bad spec is flagged inline before saving.
	step("open the host form", chromedp.Click(chromedp.CSS(`nav a[href="#/hosts"]`)), chromedp.WaitVisible(chromedp.CSS("#host-add")),
		chromedp.Click(chromedp.CSS("#host-add")), chromedp.WaitVisible(chromedp.CSS("#host-name")))
	step("fill the form", chromedp.SendKeys(chromedp.CSS("#host-name"), "e2e-01"), setField("host-macs", "52:54:00:e2:e0:01"),
		setField("host-boot-profile", "vet"), setField("host-expected-spec", "cpus: [8\nmemory_gib: 16"))
	waitFor("the inline YAML error", `document.getElementById('err-expected_spec').textContent.includes('YAML')`)
	shot(t, ctx, shots, "03-host-form-inline-error")
	step("fix the spec and save", setField("host-expected-spec", "cpus: 8\nmemory_gib: 16\n"), chromedp.Click(chromedp.CSS("#host-save")),
		chromedp.WaitVisible(chromedp.CSS("#timeline")))
	waitFor("the host page", `location.hash === '#/hosts/e2e-01'`)
	shot(t, ctx, shots, "04-host-page")

	// See it listed.
	step("open the host list", chromedp.Click(chromedp.CSS(`nav a[href="#/hosts"]`)), chromedp.WaitVisible(chromedp.CSS("#hosts-table")))
	waitFor("e2e-01 in the list", `document.getElementById('hosts-table').textContent.includes('e2e-01') && document.getElementById('hosts-table').textContent.includes('never booted')`)

	// A live update: the DHCP service would write these; the store is shared.
	db, err := store.Open(context.Background(), store.Path(state))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.AddBootEvent(context.Background(), store.BootEvent{MAC: "52:54:00:e2:e0:01", Host: "e2e-01", Kind: store.EventDHCPAck, Detail: "10.9.0.21"}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutLease(context.Background(), store.Lease{IP: netip.MustParseAddr("10.9.0.21"), Subnet: "lab", MAC: "52:54:00:e2:e0:01", State: store.LeaseBound, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	waitFor("the live boot event and lease in the host list", `(() => { const t = document.getElementById('hosts-table').textContent; return t.includes('dhcp_ack') && t.includes('10.9.0.21'); })()`)
	shot(t, ctx, shots, "05-hosts-live-update")

	// The host's boot timeline updates live too, and the dashboard on a phone.
	step("open the host page", chromedp.Navigate(base+"/ui/#/hosts/e2e-01"), chromedp.WaitVisible(chromedp.CSS("#timeline")))
	db.AddBootEvent(context.Background(), store.BootEvent{MAC: "52:54:00:e2:e0:01", Host: "e2e-01", Kind: store.EventScript, Detail: "vet.ipxe"})
	waitFor("the live timeline entry", `document.getElementById('timeline').textContent.includes('vet.ipxe')`)
	waitFor("each boot event once", `document.querySelectorAll('#timeline li').length === 2`)
	shot(t, ctx, shots, "06-host-timeline-live")

	// The other pages: leases, live logs, tokens, and changing the first-boot password.
	step("leases", chromedp.Navigate(base+"/ui/#/leases"), chromedp.WaitVisible(chromedp.CSS("#leases-table")))
	waitFor("the lease", `document.getElementById('leases-table').textContent.includes('e2e-01')`)
	step("logs", chromedp.Navigate(base+"/ui/#/logs/mgmt"), chromedp.WaitVisible(chromedp.CSS("#log-lines")))
	waitFor("mgmt's log lines", `document.getElementById('log-lines').textContent.includes('listening')`)
	shot(t, ctx, shots, "07-logs")
	step("make a token", chromedp.Navigate(base+"/ui/#/users"), chromedp.WaitVisible(chromedp.CSS("#token-name")),
		chromedp.SendKeys(chromedp.CSS("#token-name"), "ci"), chromedp.Click(chromedp.CSS("#token-form button[type=submit]")))
	waitFor("the token's secret", `document.getElementById('token-secret').textContent.includes('kiln_') && document.getElementById('tokens-table').textContent.includes('ci')`)
	shot(t, ctx, shots, "08-users-tokens")
	step("change the first-boot password", chromedp.Navigate(base+"/ui/#/settings"), chromedp.WaitVisible(chromedp.CSS("#pw-current")),
		chromedp.SendKeys(chromedp.CSS("#pw-current"), password), chromedp.SendKeys(chromedp.CSS("#pw-new"), "a much better password"),
		chromedp.Click(chromedp.CSS("#password-form button[type=submit]")))
	waitFor("the notice to go", `document.getElementById('notice').hidden && document.getElementById('password-form').textContent.includes('Password changed')`)
	shot(t, ctx, shots, "09-settings")
	if _, err := os.Stat(api.InitialPasswordPath(state)); !os.IsNotExist(err) {
		t.Errorf("the initial password file is still there after the change: %v", err)
	}

	step("phone-sized dashboard", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/ui/#/"), chromedp.WaitVisible(chromedp.CSS("#services-table")))
	waitFor("the menu button on a phone", `getComputedStyle(document.getElementById('nav-toggle')).display !== 'none' && document.documentElement.scrollWidth <= 400`)
	shot(t, ctx, shots, "10-dashboard-phone")
}

// shot saves a PNG of the page and logs its path.
func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Errorf("writing %s: %v", path, err)
		return
	}
	t.Logf("screenshot: %s", path)
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func repoRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// kilnBinary is $KILN_BIN, or kiln built from this tree.
func kilnBinary(t *testing.T, root string) string {
	if p := os.Getenv("KILN_BIN"); p != "" {
		if abs, err := filepath.Abs(filepath.Join(root, p)); err == nil && !filepath.IsAbs(p) {
			p = abs
		}
		return p
	}
	bin := filepath.Join(t.TempDir(), "kiln")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/kiln")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building kiln: %v\n%s", err, b)
	}
	return bin
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	// mu guards b.
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServe runs kiln serve until the test ends and returns its standard
// error (where the first-login lines go) once it printed "kiln: ready".
func startServe(t *testing.T, kiln, cfg, state string) string {
	t.Helper()
	cmd := exec.Command(kiln, "serve", "--config", cfg, "--state", state)
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	console := &lockedBuffer{}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			fmt.Fprintln(console, sc.Text())
			if sc.Text() == "kiln: ready" {
				once.Do(func() { close(ready) })
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("kiln serve stderr:\n%s", logs)
		}
	})
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("kiln serve not ready within 30s; console:\n%s\nstderr:\n%s", console, logs)
	}
	return logs.String()
}
