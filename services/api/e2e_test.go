package api_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
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

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"kiln.dev/kiln/internal/syncbuf"
	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/iscsi"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/inventory"
	"kiln.dev/kiln/services/vetting/orchestrator"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/spec"
	"kiln.dev/kiln/services/vetting/verdict"
)

// TestUIEndToEnd drives the web UI in headless Chromium against a real
// "kiln serve": first-boot password → log in → register a host (with an
// inline validation error first) → see it listed → see a boot event and a
// lease written to the store arrive live over SSE → vetting runs started
// from their tiles and followed live (vettingEndToEnd). Screenshots go to
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
	os.WriteFile(cfg, []byte(fmt.Sprintf("hostname: e2e\nmanagement: {https_port: %d, http_port: %d, listen: 127.0.0.1}\nprovisioning: {domain: e2e.example}\n", httpsPort, httpPort)), 0o644)
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
	ctx, cancel := context.WithTimeout(ctx, 150*time.Second)
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
	step("fix the spec and save", setField("host-expected-spec", "expect:\n  - fact: cpu.threads\n    min: 2\n"), chromedp.Click(chromedp.CSS("#host-save")),
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
	// A volume made beside the running appliance (as kiln volumes would) shows on the volumes page.
	vols, err := iscsi.OpenManager(context.Background(), db, state, "e2e.example", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vols.CreateVolume(context.Background(), "e2e-01", "boot", 64<<20, iscsi.Source{}); err != nil {
		t.Fatal(err)
	}
	step("volumes", chromedp.Navigate(base+"/ui/#/volumes"), chromedp.WaitVisible(chromedp.CSS("#volumes-table")))
	waitFor("the volume with its target", `document.getElementById('volumes-table').textContent.includes('e2e-01/boot') &&
		document.getElementById('volumes-table').textContent.includes('64 MiB') &&
		document.getElementById('volumes-table').textContent.includes(':e2e-01') &&
		document.getElementById('volumes-space').textContent.includes('free of')`)
	shot(t, ctx, shots, "07a-volumes")
	// A root image version recorded beside it (kiln roots import stores its files first) shows on the roots page.
	if _, err := db.AddRootImage(context.Background(), store.RootImage{Name: "contest", Version: 1, Promoted: true, Size: 3 << 20, Files: 42, Source: "contest.tar.zst"}); err != nil {
		t.Fatal(err)
	}
	step("roots", chromedp.Navigate(base+"/ui/#/roots"), chromedp.WaitVisible(chromedp.CSS("#roots-table")))
	waitFor("the root image version", `document.getElementById('roots-table').textContent.includes('contest@1') &&
		document.getElementById('roots-table').textContent.includes('3 MiB') &&
		document.getElementById('roots-table').textContent.includes('contest.tar.zst')`)
	shot(t, ctx, shots, "07b-roots")
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

	// Vetting: runs started from the UI, driven like an agent would, live.
	b := &browserTest{t: t, ctx: ctx, base: base, shots: shots, dir: dir, step: step, waitFor: waitFor}
	vettingEndToEnd(b, db, state)

	step("phone-sized dashboard", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/ui/#/"), chromedp.WaitVisible(chromedp.CSS("#services-table")))
	waitFor("the menu button on a phone", `getComputedStyle(document.getElementById('nav-toggle')).display !== 'none' && document.documentElement.scrollWidth <= 400`)
	shot(t, ctx, shots, "10-dashboard-phone")

}

// browserTest is what the steps of the end-to-end test share.
type browserTest struct {
	t          *testing.T
	ctx        context.Context
	base       string
	shots, dir string
	step       func(name string, actions ...chromedp.Action[chromedp.Void])
	waitFor    func(name, js string)
}

func (b *browserTest) eval(js string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// vettingEndToEnd starts runs of two vetting hosts from their tiles and
// plays their agents through the orchestrator's protocol methods (where the
// agent's HTTP requests end) over the shared database, so every change
// reaches the page over /api/v1/vetting/stream: one run streams its stages
// and passes, the other fails its spec with hold on, holds for SSH and is
// released.
func vettingEndToEnd(b *browserTest, db *store.Store, state string) {
	t, ctx := b.t, context.Background()
	orch := orchestrator.New(db, config.Vetting{}, state, testlog.New(t, slog.LevelInfo))
	const (
		passSpec = "expect:\n  - fact: memory.installed_bytes\n    min: 2GiB\n  - fact: cpu.threads\n    min: 2\n  - fact: disks.count\n    exact: 1\n"
		failSpec = "expect:\n  - fact: memory.installed_bytes\n    min: 64GiB\n  - fact: cpu.threads\n    min: 2\n"
		finding  = "memory.installed_bytes: expected ≥ 64 GiB, got 2 GiB"
	)
	if _, err := db.CreateHost(ctx, store.Host{Name: "vet-a", MACs: []string{"52:54:00:e2:e0:0a"}, BootProfile: store.BootVet, ExpectedSpec: passSpec}); err != nil {
		t.Fatal(err)
	}
	b.step("open the vetting view", chromedp.Navigate(b.base+"/ui/#/hosts"), chromedp.WaitVisible(chromedp.CSS("#hosts-table")),
		chromedp.Click(chromedp.CSS(`nav a[href="#/vetting"]`)), chromedp.WaitVisible(chromedp.CSS("#vet-tile-vet-a")))
	// e2e-01 (registered above with the vet profile) has a tile too; a host
	// registered while the view is open gets one at once.
	b.waitFor("the live vetting view", `document.getElementById('vet-live').textContent === 'live'`)
	// The page's CSP (no inline scripts or styles) holds for everything below.
	b.eval(`window.kilnCSP = []; document.addEventListener('securitypolicyviolation', e => kilnCSP.push(e.violatedDirective + ' ' + e.blockedURI)); ''`)
	if _, err := db.CreateHost(ctx, store.Host{Name: "vet-b", MACs: []string{"52:54:00:e2:e0:0b"}, BootProfile: store.BootVet, ExpectedSpec: failSpec}); err != nil {
		t.Fatal(err)
	}
	b.waitFor("a tile per vetting host", `[...document.querySelectorAll('.vet-tile')].map(e => e.dataset.host).join() === 'e2e-01,vet-a,vet-b'`)
	// Later checks compare against these nodes: tiles change in place.
	b.eval(`window.kilnTiles = [...document.querySelectorAll('.vet-tile')]; ''`)

	// Start both from their tiles: vet-a quick, vet-b quick with hold.
	b.step("start vet-a", chromedp.Click(chromedp.CSS("#vet-tile-vet-a .vet-start")))
	b.step("start vet-b with hold", chromedp.Click(chromedp.CSS("#vet-tile-vet-b .vet-hold-box")), chromedp.Click(chromedp.CSS("#vet-tile-vet-b .vet-start")))
	b.waitFor("both runs queued", `['vet-a', 'vet-b'].every(h => document.getElementById('vet-tile-' + h).dataset.run !== '' &&
		['queued', 'waiting_wol'].includes(document.getElementById('vet-tile-' + h).dataset.state))`)
	runA, runB := runOf(t, db, "vet-a"), runOf(t, db, "vet-b")
	if runA.Profile != "quick" || runA.Hold || runB.Profile != "quick" || !runB.Hold || runA.Wipe || runB.Wipe {
		t.Fatalf("runs started from the UI: vet-a %s hold=%v wipe=%v, vet-b %s hold=%v wipe=%v; want quick, hold only on vet-b, no wipe",
			runA.Profile, runA.Hold, runA.Wipe, runB.Profile, runB.Hold, runB.Wipe)
	}
	idA, idB := strconv.FormatInt(runA.ID, 10), strconv.FormatInt(runB.ID, 10)

	// A destructive run needs the host's name typed; the API's refusal (here:
	// a profile the appliance does not have, as an outdated page would send)
	// shows in the dialog; with a real profile, it starts. Then stop it.
	b.step("offer a stale profile", chromedp.Evaluate[chromedp.Void](`(() => {
		const sel = document.querySelector('#vet-tile-e2e-01 .vet-profile');
		sel.append(new Option('turbo', 'turbo')); sel.value = 'turbo'; })()`))
	b.step("open the wipe dialog", chromedp.Click(chromedp.CSS("#vet-tile-e2e-01 .vet-wipe")), chromedp.WaitVisible(chromedp.CSS("#vet-wipe-confirm")),
		chromedp.SendKeys(chromedp.CSS("#vet-wipe-confirm"), "e2e-0"))
	b.waitFor("confirm disabled until the name matches", `document.getElementById('vet-wipe-ok').disabled`)
	b.step("confirm the wipe", chromedp.SendKeys(chromedp.CSS("#vet-wipe-confirm"), "1"), chromedp.Click(chromedp.CSS("#vet-wipe-ok")))
	b.waitFor("the API's error in the dialog", `document.getElementById('vet-wipe-dialog').open &&
		document.querySelector('#vet-wipe-dialog .form-error').textContent.includes('"turbo" is not a profile')`)
	b.step("confirm again with a real profile", chromedp.Evaluate[chromedp.Void](`document.querySelector('#vet-tile-e2e-01 .vet-profile').value = 'quick'`),
		chromedp.Click(chromedp.CSS("#vet-wipe-ok")))
	b.waitFor("the destructive run", `!document.getElementById('vet-wipe-dialog').open && document.getElementById('vet-tile-e2e-01').dataset.run !== '' &&
		document.querySelector('#vet-tile-e2e-01 .vet-profile-text').textContent.includes('wipe')`)
	if r := runOf(t, db, "e2e-01"); !r.Wipe {
		t.Fatalf("the run started with \"Start destructive\" has wipe=%v", r.Wipe)
	}
	b.step("stop it", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`), chromedp.Click(chromedp.CSS("#vet-tile-e2e-01 .vet-stop")))
	b.waitFor("the stopped run", `document.getElementById('vet-tile-e2e-01').dataset.state === 'stopped' &&
		!document.querySelector('#vet-tile-e2e-01 .vet-start-row').hidden`)

	// vet-a's agent: hello, inventory, then stage events one batch at a time.
	inv := e2eInventory()
	hello(t, orch, idA, "vet-a", inv, passSpec, false)
	diffA := specDiff(t, passSpec, inv)
	record(t, orch, idA, &protocol.Inventory{Inventory: inv, Diff: diffA})
	b.waitFor("vet-a running", `document.getElementById('vet-tile-vet-a').dataset.state === 'running'`)
	t0 := time.Now().Add(-time.Minute)
	cpu := stageResult("cpu", t0, t0.Add(20*time.Second), verdict.Measure("cpu.compute_errors", 0, "", verdict.Must(verdict.OpEQ, 0, "every result matches the reference computation")),
		verdict.Evaluate(verdict.Measurement{Name: "cpu.units_per_second", Value: 18234.77, Unit: "units/s", Better: verdict.Higher}))
	mem := stageResult("memory", t0.Add(20*time.Second), t0.Add(50*time.Second), verdict.Measure("memory.miscompares", 0, "words", verdict.Must(verdict.OpEQ, 0, "every word reads back as written")),
		verdict.Evaluate(verdict.Measurement{Name: "memory.bandwidth_mbps", Value: 3911.4, Unit: "MB/s", Better: verdict.Higher}))
	events(t, orch, idA, 1, protocol.Event{Kind: protocol.EventStageStart, Stage: "cpu", Time: cpu.Started, Timeout: time.Minute},
		protocol.Event{Kind: protocol.EventStageProgress, Stage: "cpu", Time: cpu.Started.Add(5 * time.Second), Fraction: 0.25})
	b.waitFor("cpu at 25 %", `(() => { const t = document.getElementById('vet-tile-vet-a');
		return t.querySelector('.vet-stage-name').textContent === 'cpu' && t.querySelector('.vet-progress').value === 0.25 && t.querySelector('.vet-pct').textContent === '25 %'; })()`)
	events(t, orch, idA, 3, protocol.Event{Kind: protocol.EventStageProgress, Stage: "cpu", Time: cpu.Started.Add(12 * time.Second), Fraction: 0.6})
	b.waitFor("cpu at 60 %", `document.querySelector('#vet-tile-vet-a .vet-pct').textContent === '60 %'`)
	events(t, orch, idA, 4, protocol.Event{Kind: protocol.EventStageEnd, Stage: "cpu", Time: cpu.Ended, Result: &cpu},
		protocol.Event{Kind: protocol.EventStageStart, Stage: "memory", Time: mem.Started, Timeout: 5 * time.Minute},
		protocol.Event{Kind: protocol.EventStageProgress, Stage: "memory", Time: mem.Started.Add(10 * time.Second), Fraction: 0.42})
	b.waitFor("memory at 42 % after cpu passed", `(() => { const t = document.getElementById('vet-tile-vet-a');
		return t.querySelector('.vet-stage-name').textContent === 'memory' && t.querySelector('.vet-pct').textContent === '42 %' &&
			t.querySelector('.vet-stage[data-stage="cpu"]')?.dataset.status === 'PASS' && t.querySelector('.vet-stage[data-stage="memory"]')?.dataset.status === 'RUNNING'; })()`)
	shot(t, b.ctx, b.shots, "11-vetting-live")
	events(t, orch, idA, 7, protocol.Event{Kind: protocol.EventStageEnd, Stage: "memory", Time: mem.Ended, Result: &mem})
	results := []verdict.StageResult{cpu, mem}
	v, findings := verdict.Run(diffA, results)
	if v != verdict.Pass {
		t.Fatalf("vet-a's verdict = %s (%v), want PASS", v, findings)
	}
	record(t, orch, idA, &protocol.Report{RunID: idA, AgentVersion: "e2e", Profile: "quick", Started: t0, Ended: mem.Ended,
		Inventory: inv, Diff: diffA, Stages: results, Verdict: v, Findings: findings})
	b.waitFor("vet-a passed", `(() => { const t = document.getElementById('vet-tile-vet-a');
		return t.dataset.state === 'passed' && t.querySelector('.vet-verdict').textContent.includes('PASS') && t.querySelector('.vet-now').hidden &&
			!t.querySelector('.vet-start-row').hidden && t.querySelector('.vet-report-link').getAttribute('href') === '/api/v1/vetting/runs/`+idA+`/report.html'; })()`)

	// vet-b's agent: 2 GiB where 64 GiB are expected, so FAIL, then it holds.
	hello(t, orch, idB, "vet-b", inv, failSpec, true)
	diffB := specDiff(t, failSpec, inv)
	record(t, orch, idB, &protocol.Inventory{Inventory: inv, Diff: diffB})
	events(t, orch, idB, 1, protocol.Event{Kind: protocol.EventStageStart, Stage: "cpu", Time: cpu.Started}, protocol.Event{Kind: protocol.EventStageEnd, Stage: "cpu", Time: cpu.Ended, Result: &cpu})
	v, findings = verdict.Run(diffB, []verdict.StageResult{cpu})
	if v != verdict.Fail || len(findings) != 1 || findings[0].Message != finding {
		t.Fatalf("vet-b's verdict = %s, findings %+v; want FAIL with %q", v, findings, finding)
	}
	record(t, orch, idB, &protocol.Report{RunID: idB, AgentVersion: "e2e", Profile: "quick", Started: t0, Ended: cpu.Ended,
		Inventory: inv, Diff: diffB, Stages: []verdict.StageResult{cpu}, Verdict: v, Findings: findings})
	b.waitFor("vet-b holding with its finding", `(() => { const t = document.getElementById('vet-tile-vet-b');
		return t.dataset.state === 'holding' && t.querySelector('.vet-findings').textContent.includes(`+strconv.Quote(finding)+`); })()`)
	events(t, orch, idB, 3, protocol.Event{Kind: protocol.EventNote, Time: time.Now(), Note: "verdict FAIL; holding for SSH"},
		protocol.Event{Kind: protocol.EventHolding, Time: time.Now(), Addr: "10.9.0.50:22", HostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk2cXJ0dGVzdGtleWZvcmtpbG5yZXBvcnQ"})
	sshCommand := "ssh -i kiln-run-" + idB + ".key -o IdentitiesOnly=yes -o UserKnownHostsFile=kiln-run-" + idB + ".known_hosts root@10.9.0.50"
	b.waitFor("the ssh commands", `(() => { const t = document.getElementById('vet-tile-vet-b');
		return !t.querySelector('.vet-hold').hidden && t.querySelector('.vet-ssh-command')?.textContent === `+strconv.Quote(sshCommand)+` &&
			t.querySelector('.vet-ssh-proxy').textContent === 'kiln vet ssh `+idB+`' && !t.querySelector('.vet-release').hidden && t.querySelector('.vet-start-row').hidden &&
			t.querySelector('.vet-note').textContent.includes('heartbeat'); })()`)
	b.waitFor("the same tile nodes all along", `[...document.querySelectorAll('.vet-tile')].every((e, i) => e === window.kilnTiles[i])`)
	shot(t, b.ctx, b.shots, "12-vetting-done")
	b.step("the held tile on a phone", chromedp.EmulateViewport(390, 844),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('vet-tile-vet-b').scrollIntoView()`))
	b.waitFor("tiles one column wide on a phone", `document.documentElement.scrollWidth <= 400 &&
		document.querySelector('#vet-tile-vet-b .vet-ssh-command').getBoundingClientRect().right <= 390`)
	shot(t, b.ctx, b.shots, "14-vetting-phone")
	b.step("back to a desktop", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.ClearDeviceMetricsOverride, cdp.Empty{})
		return err
	}))

	// Download key saves the run's private key as a file.
	downloads := filepath.Join(b.dir, "downloads")
	if _, err := chromedp.CallBrowser(b.ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads}); err != nil {
		t.Fatal(err)
	}
	b.step("download the key", chromedp.Click(chromedp.CSS("#vet-tile-vet-b .vet-download-key")))
	keyFile := filepath.Join(downloads, "kiln-run-"+idB+".key")
	var key []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if key, _ = os.ReadFile(keyFile); strings.Contains(string(key), "END OPENSSH PRIVATE KEY") || time.Now().After(deadline) {
			break
		}
	}
	if held := runOf(t, db, "vet-b"); string(key) != held.SSHPrivate || held.SSHPrivate == "" {
		t.Fatalf("downloaded %s = %q, want the run's private key", keyFile, key)
	}

	// Release ends the hold: the run ends failed.
	b.step("release", chromedp.Click(chromedp.CSS("#vet-tile-vet-b .vet-release")))
	b.waitFor("vet-b released", `(() => { const t = document.getElementById('vet-tile-vet-b');
		return t.dataset.state === 'failed' && t.querySelector('.vet-hold').hidden && !t.querySelector('.vet-start-row').hidden; })()`)
	if r := runOf(t, db, "vet-b"); r.State != orchestrator.StateFailed || r.Active {
		t.Fatalf("vet-b's run after release: %s active=%v, want failed and over", r.State, r.Active)
	}

	// A tile opens the host's run history, which embeds a report.
	b.step("open vet-a's history", chromedp.Click(chromedp.CSS("#vet-tile-vet-a .vet-host")), chromedp.WaitVisible(chromedp.CSS("#vet-history")))
	b.waitFor("the history row", `location.hash === '#/vetting/vet-a' && document.getElementById('vet-history').textContent.includes('#`+idA+`') &&
		document.getElementById('vet-history').textContent.includes('passed')`)
	b.step("view the report inline", chromedp.Click(chromedp.CSS("#vet-history .vet-view")), chromedp.WaitVisible(chromedp.CSS("iframe.vet-report")))
	b.waitFor("the embedded report", `(() => { const d = document.querySelector('iframe.vet-report').contentDocument;
		return !!d && d.body.textContent.includes('vet-a') && d.body.textContent.includes('PASS'); })()`)

	if v := b.eval(`window.kilnCSP.join('\n')`); v != "" {
		t.Errorf("Content-Security-Policy violations in the vetting view:\n%s", v)
	}

	// The passed run's HTML report as its own page.
	b.step("open the report", chromedp.Navigate(b.base+"/api/v1/vetting/runs/"+idA+"/report.html"))
	b.waitFor("the report page", `document.body.textContent.includes('vet-a') && document.body.textContent.includes('PASS') && document.body.textContent.includes('memory.bandwidth_mbps')`)
	shot(t, b.ctx, b.shots, "13-vetting-report")
}

// runOf returns host's newest run.
func runOf(t *testing.T, db *store.Store, host string) store.VetRun {
	t.Helper()
	runs, err := db.ListVetRuns(context.Background(), store.VetRunFilter{Host: host, Limit: 1})
	if err != nil || len(runs) == 0 {
		t.Fatalf("runs of %s: %v, %v", host, runs, err)
	}
	return runs[0]
}

func hello(t *testing.T, orch *orchestrator.Orchestrator, id, host string, inv inventory.Inventory, spec string, hold bool) {
	t.Helper()
	a, err := orch.Hello(context.Background(), id, protocol.Hello{Protocol: protocol.Version, AgentVersion: "e2e", Host: host,
		BootID: "boot-" + host, Addrs: []string{"10.9.0.50/24"}, Source: netip.MustParseAddr("10.9.0.50"), Model: orchestrator.ModelOf(inv.System.Manufacturer, inv.System.Product)})
	if err != nil {
		t.Fatalf("Hello of run %s: %v", id, err)
	}
	if a.Spec != spec || a.HoldOnFailure != hold || a.Profile != "quick" {
		t.Fatalf("assignment of run %s: spec %q, hold %v, profile %s; want the host's spec, hold %v, quick", id, a.Spec, a.HoldOnFailure, a.Profile, hold)
	}
}

func record(t *testing.T, orch *orchestrator.Orchestrator, id string, m protocol.Message) {
	t.Helper()
	if err := orch.Record(context.Background(), id, m); err != nil {
		t.Fatalf("Record(%s, %T): %v", id, m, err)
	}
}

// events records evs numbered from seq as one batch.
func events(t *testing.T, orch *orchestrator.Orchestrator, id string, seq int64, evs ...protocol.Event) {
	t.Helper()
	for i := range evs {
		evs[i].Seq = seq + int64(i)
	}
	record(t, orch, id, &protocol.Events{Events: evs})
}

func stageResult(name string, from, to time.Time, ms ...verdict.Measurement) verdict.StageResult {
	st, why := verdict.Stage(ms, nil, false)
	return verdict.StageResult{Stage: name, Status: st, Started: from, Ended: to, Measurements: ms, Summary: why}
}

func specDiff(t *testing.T, yaml string, inv inventory.Inventory) []spec.Result {
	t.Helper()
	s, err := spec.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("spec.Parse: %v", err)
	}
	return spec.Diff(s, inv.Facts())
}

// e2eInventory is a small QEMU machine with 2 GiB of memory.
func e2eInventory() inventory.Inventory {
	return inventory.Inventory{
		Kernel: "6.1.0-56-amd64", SMBIOSVersion: "3.0.0",
		System: inventory.System{Manufacturer: "QEMU", Product: "Standard PC (Q35 + ICH9, 2009)", Version: "pc-q35-7.2"},
		BIOS:   inventory.BIOS{Vendor: "EDK II", Version: "unknown", Date: "02/06/2015"},
		CPU: inventory.CPU{Model: "Intel Core Processor (Skylake)", Vendor: "GenuineIntel", Sockets: 1, Cores: 2, Threads: 2,
			Packages: []inventory.Package{{ID: 0, Socket: "CPU 0", Model: "Intel Core Processor (Skylake)", Cores: 2, Threads: 2}}},
		Memory: inventory.Memory{UsableBytes: 2012345344, InstalledBytes: 2 << 30,
			DIMMs: []inventory.DIMM{{Locator: "DIMM 0", SizeBytes: 2 << 30, Type: "RAM", FormFactor: "DIMM", Manufacturer: "QEMU"}}},
		Disks: []inventory.Disk{{Name: "vda", Transport: "virtio", SizeBytes: 8 << 30, LogicalBlock: 512, PhysicalBlock: 512, Rotational: true}},
		NICs:  []inventory.NIC{{Name: "enp0s2", MAC: "52:54:00:e2:e0:0a", Driver: "virtio_net", Carrier: true, Operstate: "up", MTU: 1500}},
		PCIe:  []inventory.PCIe{},
	}
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

// startServe runs kiln serve until the test ends and returns its standard
// error (where the first-login lines go) once it printed "kiln: ready".
func startServe(t *testing.T, kiln, cfg, state string) string {
	t.Helper()
	cmd := exec.Command(kiln, "serve", "--config", cfg, "--state", state)
	logs := &syncbuf.Buffer{}
	cmd.Stderr = logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	console := &syncbuf.Buffer{}
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
