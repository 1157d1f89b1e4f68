package vettest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/qemu/boottest"
)

// The private segment: the appliance's provisioning NIC and the target.
const (
	applianceMAC = "52:54:00:6b:6c:20"
	targetMAC    = "52:54:00:6b:76:01"
	targetHost   = "vet-target"
)

// applianceConfig gives the management NIC DHCP from QEMU's user
// networking (the API's forwarded port reaches it) and serves DHCP, TFTP and
// HTTP boot on the segment. Vetting runs with its defaults (auto_run,
// poweroff after a run).
const applianceConfig = `hostname: kiln-vet
network:
  interfaces:
    - {name: mgmt0, mac: "` + qemu.DefaultMgmtMAC + `", role: management, dhcp: true}
    - {name: prov0, mac: "` + applianceMAC + `", role: provisioning, addresses: [10.78.0.1/24]}
provisioning:
  subnets:
    - name: vet
      interface: prov0
      cidr: 10.78.0.0/24
      mode: authoritative
      pool: {start: 10.78.0.100, end: 10.78.0.199}
      lease_time: 1h
`

// failSpec is an expected spec the 2 GiB target cannot meet.
const failSpec = `expect:
  - fact: memory.installed_bytes
    min: 64GiB
`

// Bounds of the waits, several times what was measured under TCG on two
// cores: a quick run took 70 s from its creation (network boot 30 s, then
// 10 s CPU, memory, storage phases of 5 s on two disks, 2×3 s network).
const (
	runTimeout     = 5 * time.Minute
	poweroffWithin = 90 * time.Second // a run's end or its release → the VM gone
	testBudget     = 10 * time.Minute
)

var (
	passwordRE = regexp.MustCompile(`kiln: admin password: (\S+)`)
	// netbootFailedRE is the vet script's failure path: the appliance did not
	// serve the live image.
	netbootFailedRE = regexp.MustCompile(`kiln: network boot of \S+ failed`)
)

// runView is the part of a run (GET /api/v1/vetting/runs/{id}) the test reads.
type runView struct {
	ID       string    `json:"id"`
	Host     string    `json:"host"`
	State    string    `json:"state"`
	Verdict  string    `json:"verdict"`
	Summary  string    `json:"summary"`
	Stage    string    `json:"stage"`
	Error    string    `json:"error"`
	Findings []finding `json:"findings"`
	Holding  *struct {
		Addr    string `json:"addr"`
		HostKey string `json:"host_key"`
	} `json:"holding"`
	ReportURL string `json:"report_url"`
}

// finding is one of a run's findings.
type finding struct {
	Source  string `json:"source"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

// terminal are the states a run does not leave.
var terminal = []string{"passed", "failed", "stopped", "timed_out", "error"}

func TestVetting(t *testing.T) {
	image := boottest.Image(t)
	kiln := kilnBinary(t, image)
	browser := findChromium()
	if browser == "" {
		t.Skip("tier 4 vetting skipped: chromium is not installed (apt-get install chromium; make deps installs it)")
	}
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("tier 4 vetting skipped: ssh is not installed (apt-get install openssh-client; make deps installs it)")
	}
	root, err := boottest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testBudget)
	defer cancel()
	testStart := time.Now()

	dir := t.TempDir()
	configPath := filepath.Join(dir, "kiln.yaml")
	if err := os.WriteFile(configPath, []byte(applianceConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	applianceNIC, targetNIC, err := qemu.L2Pair(applianceMAC, targetMAC)
	if err != nil {
		t.Fatal(err)
	}
	appliance := startVM(t, ctx, "appliance", qemu.Config{
		Disks: []qemu.Disk{{Path: boottest.NewOverlay(t, image, "")}},
		Mgmt:  &qemu.Mgmt{HTTPPort: -1},
		NICs:  []qemu.NIC{applianceNIC},
		FwCfg: []qemu.FwCfg{{Name: "opt/kiln/config", File: configPath}},
	})
	appliance.FailOn(boottest.PanicRE)
	targetDir := keptDir(t, "target")
	tg := qemu.Target{Dir: targetDir, NIC: targetNIC}
	var target *qemu.VM // the target's current power-on
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("appliance console tail:\n%s", appliance.ConsoleTail())
		if target != nil {
			t.Logf("target console tail:\n%s", target.ConsoleTail())
		}
	})

	if _, err := appliance.Expect(ctx, boottest.ReadyRE, boottest.BootTimeout()); err != nil {
		t.Fatalf("appliance did not become ready: %v", err)
	}
	t.Logf("appliance ready in %s", time.Since(testStart).Round(time.Second))
	base := fmt.Sprintf("https://127.0.0.1:%d", appliance.HTTPSPort())
	creds := filepath.Join(dir, "credentials.json")
	c := &client{t: t, base: base, hc: boottest.HTTPClient(), token: login(t, ctx, kiln, appliance, base, creds)}

	// Run 1: the target meets its spec and passes.
	c.call(ctx, "POST", "/api/v1/hosts", map[string]any{"name": targetHost, "macs": []string{targetMAC},
		"boot_profile": "vet", "expected_spec": tg.ExpectedSpec()}, http.StatusCreated, nil)
	var run runView
	c.call(ctx, "POST", "/api/v1/vetting/runs", map[string]any{"host": targetHost, "profile": "quick"}, http.StatusCreated, &run)
	created := time.Now()
	t.Logf("run %s created (state %s)", run.ID, run.State)
	target = powerOn(t, ctx, tg)
	run = c.waitRun(ctx, run.ID, "passed", created, target)
	t.Logf("run %s passed %s after it was created (%s)", run.ID, time.Since(created).Round(time.Second), run.Summary)
	if run.Verdict != "PASS" {
		t.Errorf("run %s: verdict %q, want PASS (findings %+v)", run.ID, run.Verdict, run.Findings)
	}
	waitPoweroff(t, ctx, target, "after its passed run")

	var doc struct {
		Verdict string `json:"verdict"`
		Machine struct {
			Disks []struct {
				Name      string `json:"name"`
				Serial    string `json:"serial"`
				SizeBytes int64  `json:"size_bytes"`
			} `json:"disks"`
		} `json:"machine"`
	}
	c.call(ctx, "GET", "/api/v1/vetting/runs/"+run.ID+"/report.json", nil, http.StatusOK, &doc)
	var disks []string
	for _, d := range doc.Machine.Disks {
		disks = append(disks, fmt.Sprintf("%s %s %d", d.Name, d.Serial, d.SizeBytes))
	}
	if doc.Verdict != "PASS" || len(doc.Machine.Disks) != 2 {
		t.Errorf("report.json: verdict %q, disks %q; want PASS and the target's 2 disks", doc.Verdict, disks)
	} else {
		t.Logf("report.json: verdict %s, disks %q", doc.Verdict, disks)
	}
	status, body, ctype := c.get(ctx, "/api/v1/vetting/runs/"+run.ID+"/report.html")
	if status != http.StatusOK || !strings.HasPrefix(ctype, "text/html") || !bytes.Contains(body, []byte(targetHost)) {
		t.Errorf("report.html = %d %s (%d bytes), want 200 text/html naming %s", status, ctype, len(body), targetHost)
	}
	shot := filepath.Join(root, "out", "screenshots", "vet-report.png")
	if err := screenshot(t, browser, filepath.Join(dir, "chromium"), base+"/api/v1/vetting/runs/"+run.ID+"/report.html", c.token, shot); err != nil {
		t.Errorf("screenshot of the report: %v", err)
	} else {
		t.Logf("screenshot: %s", shot)
	}

	// Run 2: the spec asks for more memory than the target has; the run
	// holds the failed target for SSH.
	var host map[string]any
	c.call(ctx, "GET", "/api/v1/hosts/"+targetHost, nil, http.StatusOK, &host)
	in := map[string]any{}
	for _, k := range []string{"name", "macs", "role", "boot_profile", "ipv4", "aliases", "wol_mac", "switch_port",
		"circuit_id", "remote_id", "ipxe_binary", "kernel", "initrd", "cmdline"} {
		if v, ok := host[k]; ok {
			in[k] = v
		}
	}
	in["expected_spec"] = failSpec
	c.call(ctx, "PUT", "/api/v1/hosts/"+targetHost, in, http.StatusOK, nil)
	c.call(ctx, "POST", "/api/v1/vetting/runs", map[string]any{"host": targetHost, "profile": "quick", "hold": true}, http.StatusCreated, &run)
	created = time.Now()
	t.Logf("run %s created with hold=true (state %s)", run.ID, run.State)
	target = powerOn(t, ctx, tg)
	run = c.waitRun(ctx, run.ID, "holding", created, target)
	t.Logf("run %s holding %s after it was created (verdict %s, %s)", run.ID, time.Since(created).Round(time.Second), run.Verdict, run.Summary)
	if !slices.ContainsFunc(run.Findings, func(f finding) bool { return strings.Contains(f.Message, "memory.installed_bytes") }) {
		t.Errorf("run %s findings %+v name no memory.installed_bytes", run.ID, run.Findings)
	}

	out := sshToHeld(t, ctx, c, sshBin, kiln, creds, run.ID, dir)
	if !strings.Contains(out, "kiln.mode=vet") {
		t.Errorf("ssh to the held target: /proc/cmdline = %q, want kiln.mode=vet", out)
	} else {
		t.Logf("ssh through the appliance to the held target: /proc/cmdline = %s", strings.TrimSpace(out))
	}

	c.call(ctx, "POST", "/api/v1/vetting/runs/"+run.ID+"/release", nil, http.StatusOK, &run)
	released := time.Now()
	waitPoweroff(t, ctx, target, "after its run was released")
	t.Logf("target powered off %s after the release", time.Since(released).Round(time.Second))
	c.call(ctx, "GET", "/api/v1/vetting/runs/"+run.ID, nil, http.StatusOK, &run)
	if run.State == "holding" || !slices.Contains(terminal, run.State) {
		t.Errorf("run %s after release: state %q, want it over", run.ID, run.State)
	}
	t.Logf("whole test: %s", time.Since(testStart).Round(time.Second))
}

// kilnBinary is $KILN_BIN, else kiln next to the image or in <repo>/out.
func kilnBinary(t *testing.T, image string) string {
	t.Helper()
	cands := []string{os.Getenv("KILN_BIN"), filepath.Join(filepath.Dir(image), "kiln")}
	if root, err := boottest.RepoRoot(); err == nil {
		cands = append(cands, filepath.Join(root, "out", "kiln"))
	}
	for _, p := range cands {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			abs, _ := filepath.Abs(p)
			return abs
		}
	}
	t.Skip("tier 4 vetting skipped: no kiln binary (set KILN_BIN, or make build)")
	return ""
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// keptDir makes a directory for a VM that is removed when the test passes
// and kept (and named) when it fails.
func keptDir(t *testing.T, name string) string {
	t.Helper()
	d, err := os.MkdirTemp("", "kiln-vettest-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("files of the %s VM (serial.log): %s", name, d)
			return
		}
		os.RemoveAll(d)
	})
	return d
}

// startVM starts a VM in a kept directory; it is closed when the test ends.
func startVM(t *testing.T, ctx context.Context, name string, cfg qemu.Config) *qemu.VM {
	t.Helper()
	cfg.WorkDir = keptDir(t, name)
	vm, err := qemu.Start(ctx, cfg, qemu.Options{Logger: boottest.TestLogger(t), AnswerCursorQueries: true})
	if err != nil {
		t.Fatalf("starting the %s VM: %v", name, err)
	}
	t.Cleanup(func() { vm.Close() })
	return vm
}

// powerOn starts the target (again: same disks and NVRAM).
func powerOn(t *testing.T, ctx context.Context, tg qemu.Target) *qemu.VM {
	t.Helper()
	cfg, err := tg.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := qemu.Start(ctx, cfg, qemu.Options{Logger: boottest.TestLogger(t), AnswerCursorQueries: true})
	if err != nil {
		t.Fatalf("powering on the target: %v", err)
	}
	t.Cleanup(func() { vm.Close() })
	return vm
}

// waitPoweroff waits for the target to power itself off.
func waitPoweroff(t *testing.T, ctx context.Context, vm *qemu.VM, when string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, poweroffWithin)
	defer cancel()
	if err := vm.Wait(wctx); err != nil {
		t.Fatalf("the target did not power off within %s %s: %v", poweroffWithin, when, err)
	}
}

// login runs `kiln login` with the first-boot password from the console and
// returns the API token it saved in creds.
func login(t *testing.T, ctx context.Context, kiln string, vm *qemu.VM, base, creds string) string {
	t.Helper()
	pw := ""
	for _, l := range vm.Lines() {
		if m := passwordRE.FindStringSubmatch(l.Text); m != nil {
			pw = m[1]
		}
	}
	if pw == "" {
		t.Fatalf("no %q line on the console: cannot log in", "kiln: admin password:")
	}
	lctx, cancel := context.WithTimeout(ctx, 90*time.Second) // bcrypt under TCG
	defer cancel()
	cmd := exec.CommandContext(lctx, kiln, "login", "--url", base, "--credentials", creds, "--password-stdin")
	cmd.Stdin = strings.NewReader(pw + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kiln login: %v\n%s", err, out)
	}
	var f struct {
		Servers map[string]struct {
			Token string `json:"token"`
		} `json:"servers"`
	}
	b, err := os.ReadFile(creds)
	if err == nil {
		err = json.Unmarshal(b, &f)
	}
	if err != nil || f.Servers[base].Token == "" {
		t.Fatalf("kiln login saved no token for %s in %s (%v):\n%s", base, creds, err, out)
	}
	return f.Servers[base].Token
}

// client calls the appliance's API with a bearer token.
type client struct {
	t     *testing.T
	base  string
	token string
	hc    *http.Client
}

func (c *client) do(ctx context.Context, method, path string, in any) (int, []byte, string, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, "", err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header.Get("Content-Type"), err
}

// call fails the test unless the request answers want; out, if set,
// receives the JSON answer.
func (c *client) call(ctx context.Context, method, path string, in any, want int, out any) {
	c.t.Helper()
	status, b, _, err := c.do(ctx, method, path, in)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	if status != want {
		c.t.Fatalf("%s %s = %d, want %d:\n%s", method, path, status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v:\n%s", method, path, err, b)
		}
	}
}

// get returns the status, body and content type of a GET.
func (c *client) get(ctx context.Context, path string) (int, []byte, string) {
	c.t.Helper()
	status, b, ctype, err := c.do(ctx, "GET", path, nil)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	return status, b, ctype
}

// waitRun polls the run until its state is want, logging every change with
// the time since created. It fails at once when the run ends in another
// state, when the target's network boot fails or the target powers off
// first, and after runTimeout.
func (c *client) waitRun(ctx context.Context, id, want string, created time.Time, target *qemu.VM) runView {
	c.t.Helper()
	deadline := time.Now().Add(runTimeout)
	var run runView
	last, stage := "", ""
	var exitedAt time.Time
	for {
		c.call(ctx, "GET", "/api/v1/vetting/runs/"+id, nil, http.StatusOK, &run)
		if run.State != last || run.Stage != stage {
			c.t.Logf("run %s: %s %s (+%s)", id, run.State, run.Stage, time.Since(created).Round(time.Second))
			last, stage = run.State, run.Stage
		}
		switch {
		case run.State == want:
			return run
		case slices.Contains(terminal, run.State):
			c.t.Fatalf("run %s ended %s (verdict %q, error %q, findings %+v), want %s", id, run.State, run.Verdict, run.Error, run.Findings, want)
		case consoleHas(target, netbootFailedRE):
			c.t.Fatalf("run %s: the target could not load the vet live image from the appliance "+
				"(the image needs /usr/lib/kiln/vet/vmlinuz and initrd: rebuild it with make image)", id)
		case consoleHas(target, boottest.PanicRE):
			c.t.Fatalf("run %s: the target's kernel panicked", id)
		case time.Now().After(deadline):
			c.t.Fatalf("run %s still %s after %s, want %s", id, run.State, runTimeout, want)
		}
		select {
		case <-target.Exited():
			// A report may land just before the poweroff: look once more.
			if exitedAt.IsZero() {
				exitedAt = time.Now()
			} else if time.Since(exitedAt) > 5*time.Second {
				c.t.Fatalf("run %s: the target powered off while the run was %s, want %s", id, run.State, want)
			}
		default:
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("run %s: %v", id, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

// consoleHas reports whether a console line so far matches re.
func consoleHas(vm *qemu.VM, re *regexp.Regexp) bool {
	for _, l := range vm.Lines() {
		if re.MatchString(l.Text) {
			return true
		}
	}
	return false
}

// sshToHeld logs in to the held target as an operator would: the run's key
// and known_hosts line from the API, Debian's ssh with `kiln vet tunnel <id>`
// as ProxyCommand, and returns the output of `cat /proc/cmdline` there.
func sshToHeld(t *testing.T, ctx context.Context, c *client, sshBin, kiln, creds, id, dir string) string {
	t.Helper()
	var login struct {
		User         string `json:"user"`
		Addr         string `json:"addr"`
		PrivateKey   string `json:"private_key"`
		KnownHosts   string `json:"known_hosts"`
		ProxyCommand string `json:"proxy_command"`
	}
	c.call(ctx, "GET", "/api/v1/vetting/runs/"+id+"/ssh", nil, http.StatusOK, &login)
	host, port, err := net.SplitHostPort(login.Addr)
	if err != nil || login.User == "" || login.PrivateKey == "" || login.KnownHosts == "" {
		t.Fatalf("GET …/ssh = %+v: want user, addr host:port, private_key and known_hosts", login)
	}
	key, known := filepath.Join(dir, "run.key"), filepath.Join(dir, "run.known_hosts")
	if err := os.WriteFile(key, []byte(login.PrivateKey), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(known, []byte(login.KnownHosts+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("GET …/ssh: %s as %s, proxy_command %q", login.Addr, login.User, login.ProxyCommand)
	proxy := shellQuote(kiln) + " vet tunnel " + shellQuote(id)
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(sctx, sshBin, "-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+known, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=60", "-o", "ProxyCommand="+proxy, "-p", port, login.User+"@"+host, "cat /proc/cmdline")
	// kiln vet tunnel finds the appliance and the token where kiln login put them.
	cmd.Env = append(os.Environ(), "KILN_CREDENTIALS="+creds)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("ssh -o ProxyCommand=%q %s@%s: %v\n%s", proxy, login.User, login.Addr, err, stderr.String())
	}
	t.Logf("ssh through the tunnel took %s", time.Since(start).Round(100*time.Millisecond))
	return stdout.String()
}

// shellQuote quotes s for sh (ssh runs ProxyCommand with the shell).
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
