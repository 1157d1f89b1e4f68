// Package boottest holds kiln's tier-4 tests, which boot the built appliance
// image in QEMU (through package qemu, like `kiln vm run`), and the helpers
// other tier-4 tests share: finding the image, booting a VM on a private
// overlay, the console markers of the boot contract, an HTTPS client for the
// management port and the boot-phase breakdown the benchmark prints.
//
// The image is $KILN_IMAGE, else <repo>/out/kiln.qcow2 (built by `make image`);
// tests skip with the reason when it, QEMU or OVMF is missing, and with
// -short. Every VM gets its own qcow2 overlay, so the built image is never
// modified, and is killed when its test ends.
package boottest

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/qemu"
)

// Console markers of the boot contract (see docs and the shared briefing). A
// printk-style "[    1.234567] " prefix is tolerated in case a stage logs
// through /dev/kmsg.
var (
	Stage1RE   = regexp.MustCompile(`kiln-stage1: slot ([ab]) root PARTUUID=([0-9A-Fa-f-]+)`)
	SwitchRE   = regexp.MustCompile(`kiln-stage1: switching root`)
	InitRE     = regexp.MustCompile(`^(\[[ 0-9.]+\] )?kiln-init: starting`)
	ReadyRE    = regexp.MustCompile(`^(\[[ 0-9.]+\] )?kiln: ready\s*$`)
	PoweroffRE = regexp.MustCompile(`kiln-init: reached poweroff`)
	RebootRE   = regexp.MustCompile(`kiln-init: reached reboot`)
	BaselineRE = regexp.MustCompile(`kiln-baseline: hello`)
	// FirmwareDoneRE is OVMF handing over to the boot loader on the disk.
	FirmwareDoneRE = regexp.MustCompile(`BdsDxe: starting Boot`)
	// KernelStubRE is the kernel's EFI stub running (systemd-boot has loaded
	// the kernel and the initrd).
	KernelStubRE = regexp.MustCompile(`EFI stub: `)
	// RunInitRE is the kernel starting the initramfs /init.
	RunInitRE = regexp.MustCompile(`Run /init as init process`)
	// PanicRE fails every Expect of a VM started by NewVM at once.
	PanicRE = regexp.MustCompile(`Kernel panic - not syncing`)
)

// BootTimeout bounds one boot to "kiln: ready": $KILN_BOOT_TIMEOUT (a Go
// duration) or 3 minutes. A TCG boot takes 12-20 s on an idle 2-core machine.
func BootTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("KILN_BOOT_TIMEOUT")); err == nil && d > 0 {
		return d
	}
	return 3 * time.Minute
}

// RepoRoot finds the module root (the directory holding go.mod) above the
// working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Requirements skips t unless QEMU, OVMF and qemu-img are installed and the
// test is not running with -short.
func Requirements(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("tier 4 (boots the image in QEMU) skipped with -short")
	}
	if err := qemu.Available(qemu.Config{}); err != nil {
		t.Skipf("tier 4 skipped: %v", err)
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("tier 4 skipped: qemu-img not installed (apt-get install qemu-utils)")
	}
}

// imagePath resolves an image from env (if set) or <repo>/out/def.
func imagePath(env, def string) (string, error) {
	p := os.Getenv(env)
	if p == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		p = filepath.Join(root, "out", def)
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s: %w (build it with `make image`, or set %s)", p, err, env)
	}
	return p, nil
}

// Image returns the appliance image to boot, skipping t (with the tier-4
// requirements checked) when it is missing.
func Image(t testing.TB) string {
	t.Helper()
	Requirements(t)
	p, err := imagePath("KILN_IMAGE", "kiln.qcow2")
	if err != nil {
		t.Skipf("tier 4 skipped: no image: %v", err)
	}
	return p
}

// BaselineImage returns the hello-world baseline image ($KILN_BASELINE_IMAGE or
// <repo>/out/baseline.qcow2, built by qemu/bench-boot.sh), or "" if missing.
func BaselineImage() string {
	p, err := imagePath("KILN_BASELINE_IMAGE", "baseline.qcow2")
	if err != nil {
		return ""
	}
	return p
}

// VMOptions tune NewVM.
type VMOptions struct {
	// Disk is an existing disk to boot instead of a new overlay on Image.
	Disk string
	// DiskSize is the new overlay's size ("2G" if empty): larger than the
	// image, so first boot grows the data partition.
	DiskSize string
	// MemoryMiB is the guest memory (1024 if zero).
	MemoryMiB int
	// NICs are extra NICs.
	NICs []qemu.NIC
	// Config, when set, is an appliance config (YAML) passed through QEMU's
	// fw_cfg as opt/kiln/config, which PID 1 prefers over the image's default.
	Config string
	// Firmware is qemu.UEFI (OVMF, the default) or qemu.BIOS (SeaBIOS).
	Firmware qemu.Firmware
	// CDROM is an ISO in a CD-ROM drive that the firmware boots first.
	CDROM string
}

// NewOverlay creates a qcow2 overlay on base in a temp dir of t.
func NewOverlay(t testing.TB, base, size string) string {
	t.Helper()
	if size == "" {
		size = "2G"
	}
	ov := filepath.Join(t.TempDir(), "disk.qcow2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := qemu.CreateOverlay(ctx, base, ov, size); err != nil {
		t.Fatal(err)
	}
	return ov
}

// NewVM boots image (on a new overlay unless o.Disk is set) with a
// management NIC on free ports. A kernel panic fails every Expect at once.
// The VM is closed when t ends; its serial console is kept as serial.log in
// the VM's work dir, which a failing test names.
func NewVM(t testing.TB, ctx context.Context, image string, o VMOptions) *qemu.VM {
	t.Helper()
	disk := o.Disk
	if disk == "" {
		disk = NewOverlay(t, image, o.DiskSize)
	}
	// The work dir (serial.log) outlives a failed test for a post-mortem.
	work, err := os.MkdirTemp("", "kiln-vm-"+strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())+"-")
	if err != nil {
		t.Fatal(err)
	}
	cfg := qemu.Config{
		WorkDir:   work,
		Firmware:  o.Firmware,
		MemoryMiB: o.MemoryMiB,
		Disks:     []qemu.Disk{{Path: disk}},
		CDROM:     o.CDROM,
		Mgmt:      &qemu.Mgmt{Pcap: os.Getenv("KILN_MGMT_PCAP")},
		NICs:      o.NICs,
	}
	if o.Config != "" {
		path := filepath.Join(work, "kiln.yaml")
		if err := os.WriteFile(path, []byte(o.Config), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg.Extra = append(cfg.Extra, "-fw_cfg", "name=opt/kiln/config,file="+path)
	}
	vm, err := qemu.Start(ctx, cfg, qemu.Options{Logger: TestLogger(t), AnswerCursorQueries: true})
	if err != nil {
		os.RemoveAll(work)
		t.Fatal(err)
	}
	vm.FailOn(PanicRE)
	t.Cleanup(func() {
		vm.Close()
		if t.Failed() {
			t.Logf("serial console of the failed test: %s/serial.log", work)
			return
		}
		os.RemoveAll(work)
	})
	return vm
}

// TestLogger routes slog output to t.Log (warnings and errors only for a
// benchmark, whose log is printed with its result).
func TestLogger(t testing.TB) *slog.Logger {
	level := slog.LevelInfo
	if _, ok := t.(*testing.B); ok {
		level = slog.LevelWarn
	}
	return testlog.New(t, level).With("component", "boottest")
}

// HTTPClient returns a client for the management ports: it accepts the
// appliance's self-signed certificate, does not follow redirects and times
// out after 10 s.
func HTTPClient() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Phase is one step of a boot with its duration.
type Phase struct {
	Name string
	Dur  time.Duration
}

// Marker names a console line that ends a phase.
type Marker struct {
	Phase string
	RE    *regexp.Regexp
}

// printkRE matches the kernel's timestamp prefix.
var printkRE = regexp.MustCompile(`^\[\s*(\d+\.\d+)\]`)

// KernelStart estimates when the kernel started, from the arrival times and
// printk timestamps of its console lines: each line arrives no earlier than
// the kernel printed it, so the smallest arrival-minus-timestamp is the best
// estimate (lines printed before ttyS0 registered arrive in a burst later).
func KernelStart(lines []qemu.Line) (time.Time, bool) {
	var best time.Time
	for _, l := range lines {
		m := printkRE.FindStringSubmatch(l.Text)
		if m == nil {
			continue
		}
		secs, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			continue
		}
		t := l.At.Add(-time.Duration(secs * float64(time.Second)))
		if best.IsZero() || t.Before(best) {
			best = t
		}
	}
	return best, !best.IsZero()
}

// Phases splits a boot into phases ending at each marker's first line after
// the previous marker, starting from start. A "kernel start" boundary
// estimated by KernelStart is inserted where a marker's Phase is "kernel".
// Missing markers end the breakdown.
func Phases(start time.Time, lines []qemu.Line, markers []Marker) []Phase {
	var out []Phase
	prev := start
	i := 0
	for _, m := range markers {
		var at time.Time
		if m.RE == nil { // the estimated kernel start
			ks, ok := KernelStart(lines)
			if !ok {
				break
			}
			at = ks
		} else {
			found := false
			for ; i < len(lines); i++ {
				if m.RE.MatchString(lines[i].Text) {
					at, found = lines[i].At, true
					i++
					break
				}
			}
			if !found {
				break
			}
		}
		if at.Before(prev) { // an estimate may land before the previous line
			at = prev
		}
		out = append(out, Phase{Name: m.Phase, Dur: at.Sub(prev)})
		prev = at
	}
	return out
}

// KilnMarkers are the phase boundaries of an appliance boot.
var KilnMarkers = []Marker{
	{"firmware (OVMF)", FirmwareDoneRE},
	{"systemd-boot + load kernel/initrd", KernelStubRE},
	{"EFI stub + kernel early (to kernel start)", nil},
	{"kernel to /init", RunInitRE},
	{"/init to stage-1 marker", Stage1RE},
	{"stage 1 (to kiln-init: starting)", InitRE},
	{"PID 1 + services (to kiln: ready)", ReadyRE},
}

// BaselineMarkers are the phase boundaries of the hello-world baseline.
var BaselineMarkers = []Marker{
	{"firmware (OVMF)", FirmwareDoneRE},
	{"systemd-boot + load kernel/initrd", KernelStubRE},
	{"EFI stub + kernel early (to kernel start)", nil},
	{"kernel to /init", RunInitRE},
	{"hello /init (to kiln-baseline: hello)", BaselineRE},
}

// passwordRE is PID 1's first-boot line with the admin password.
var passwordRE = regexp.MustCompile(`kiln: admin password: (\S+)`)

// Login logs in as admin with the password the console printed and returns
// the session cookie (a GET needs no CSRF token).
func Login(t testing.TB, ctx context.Context, vm *qemu.VM, base string) string {
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
	hc := HTTPClient()
	hc.Timeout = 30 * time.Second // bcrypt under TCG
	body := fmt.Sprintf(`{"user":"admin","password":%q}`, pw)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/session", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST /api/v1/session: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/v1/session as admin = %s, want 201", resp.Status)
	}
	var cookies []string
	for _, c := range resp.Cookies() {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	return strings.Join(cookies, "; ")
}
