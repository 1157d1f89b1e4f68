package guest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/qemu/guest/internal/job"
)

// Options describe the guest a test runs in.
type Options struct {
	// Modules are loaded, with their dependency closure, before the test runs,
	// e.g. "nfsd", "target_core_file", "iscsi_target_mod", "iscsi_tcp", "nfsv4", "veth".
	Modules []string
	// MemoryMiB is the guest's memory; 1024 if zero. Everything the guest writes
	// outside Shared lives in it.
	MemoryMiB int
	// CPUs is the number of vCPUs; 2 if zero.
	CPUs int
	// Timeout bounds the whole guest run, boot included; 10m if zero, and
	// never past the host test's own deadline (go test -timeout).
	Timeout time.Duration
	// Shared are host directories mounted read-write at the same path inside
	// the guest (results, scratch files). The guest also finds them, joined
	// with ':', in $KILN_GUEST_SHARED.
	Shared []string
	// Disks are extra disk image files attached as virtio-blk (/dev/vda, …);
	// the format is guessed from the name (".qcow2", else raw).
	Disks []string
	// Env is extra environment ("KEY=value") for the test process inside.
	Env []string
}

func (o Options) withDefaults() Options {
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 1024
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	return o
}

// EnvInside is set to "1" in the environment of the test inside a guest.
const EnvInside = "KILN_GUEST"

// EnvShared lists Options.Shared (joined with ':') inside a guest.
const EnvShared = "KILN_GUEST_SHARED"

var inside = sync.OnceValue(func() bool {
	if os.Getenv(EnvInside) != "1" {
		return false
	}
	b, err := os.ReadFile("/proc/cmdline")
	return err == nil && strings.Contains(string(b), job.Param+"=")
})

// Inside reports whether this process runs inside a guest (KILN_GUEST=1
// and a guest kernel command line).
func Inside() bool { return inside() }

// Enter runs the calling test inside a guest. On the host it boots the guest,
// runs this same test binary there with -test.run anchored to exactly
// t.Name() and -test.v, streams the guest's output to t.Log, fails t if the
// guest test failed, skips t with a clear reason if QEMU or the kernel
// package is missing (or with -short), and returns false. Inside the guest it
// returns true and the test body continues, as root, with the guest kernel.
func Enter(t *testing.T, o Options) bool {
	t.Helper()
	if Inside() {
		return true
	}
	p := prepare(t, o)
	p.boot(t, []string{"-test.run=" + anchor(t.Name()), "-test.v=true", "-test.count=1"}, "")
	return false
}

// EnterB is Enter for benchmarks: the guest runs only this benchmark
// (-test.run=^$ -test.bench anchored to b.Name(), with the host's
// -test.benchtime and -test.benchmem), and the host benchmark reports the
// guest's metrics (ns/op, MB/s, custom ones) as its own, running the guest
// once whatever the host's b.N.
func EnterB(b *testing.B, o Options) bool {
	b.Helper()
	if Inside() {
		return true
	}
	p := prepare(b, o)
	args := []string{"-test.run=^$", "-test.bench=" + anchor(b.Name()), "-test.v=true", "-test.count=1"}
	if f := flag.Lookup("test.benchtime"); f != nil {
		args = append(args, "-test.benchtime="+f.Value.String())
	}
	if f := flag.Lookup("test.benchmem"); f != nil && f.Value.String() == "true" {
		args = append(args, "-test.benchmem")
	}
	var metrics map[string]float64
	// One guest run however many iterations b.Loop asks for: the guest does
	// the benchmark's own iterations.
	for ran := false; b.Loop(); {
		if !ran {
			metrics, ran = p.boot(b, args, b.Name()), true
		}
	}
	if metrics == nil {
		// No result line (the guest benchmark skipped): the host's own ns/op
		// would time the boot, so leave it out.
		metrics = map[string]float64{"ns/op": 0}
	}
	for unit, v := range metrics {
		b.ReportMetric(v, unit)
	}
	return false
}

// anchor turns a test name into a -test.run/-test.bench pattern that matches
// exactly it (each '/'-separated level anchored and quoted).
func anchor(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// prepared is what one guest run needs from the host, checked up front.
type prepared struct {
	o          Options
	kernel     string // the kernel image
	initrd     string // the cached initramfs
	moduleTree string // the store's /lib/modules/<release>
	modprobe   string // the host's kmod modprobe
	exe        string // this test binary
	dir        string // the test's working directory
	timeout    time.Duration
}

// prepare checks the guest tier's requirements, skipping tb when one is
// missing, and builds (or finds in the cache) the kernel and initramfs.
func prepare(tb testing.TB, o Options) *prepared {
	tb.Helper()
	if testing.Short() {
		tb.Skip("boots a QEMU guest (seconds under TCG); skipped with -short")
	}
	if err := qemu.Available(qemu.Config{Firmware: qemu.BIOS}); err != nil {
		tb.Skipf("guest tier skipped: %v", err)
	}
	o = o.withDefaults()
	p := &prepared{o: o, timeout: o.Timeout}
	if d, ok := tb.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			// Leave the host test time to report before go test's own timeout.
			if left := time.Until(dl) - 15*time.Second; left < p.timeout {
				p.timeout = max(left, 10*time.Second)
			}
		}
	}
	var err error
	if p.dir, err = os.Getwd(); err != nil {
		tb.Fatal(err)
	}
	if p.exe, err = os.Executable(); err != nil {
		tb.Fatalf("finding the test binary: %v", err)
	}
	if err := validate(o); err != nil {
		tb.Fatal(err)
	}
	root, err := repoRoot(p.dir)
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cache := filepath.Join(root, "out", "cache", "guest")
	store, err := openStore(ctx, root, cache)
	if err == nil {
		var initBin string
		if _, err = store.closure(o.Modules); err == nil {
			if initBin, err = buildInit(ctx, root, cache); err == nil {
				p.initrd, err = store.initramfs(initBin)
			}
		}
	}
	if errors.Is(err, errUnavailable) {
		tb.Skipf("guest tier skipped: %v", err)
	}
	if err != nil {
		tb.Fatalf("preparing the guest: %v", err)
	}
	p.kernel, p.moduleTree = store.kernel(), store.modDir()
	if p.modprobe, err = hostTool("modprobe"); err != nil {
		tb.Skipf("guest tier skipped: %v", err)
	}
	tb.Logf("guest: kernel %s and initramfs ready in %v", store.release, time.Since(start).Round(time.Millisecond))
	return p
}

// validate checks Options against the host.
func validate(o Options) error {
	for i, d := range o.Shared {
		if !filepath.IsAbs(d) || filepath.Clean(d) == "/" {
			return fmt.Errorf("guest Options.Shared[%d] %q: want an absolute directory other than /", i, d)
		}
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return fmt.Errorf("guest Options.Shared[%d] %q: not a directory on the host (create it first, e.g. with t.TempDir)", i, d)
		}
	}
	for i, d := range o.Disks {
		if _, err := os.Stat(d); err != nil {
			return fmt.Errorf("guest Options.Disks[%d]: %v", i, err)
		}
	}
	for i, kv := range o.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("guest Options.Env[%d] %q: want KEY=value", i, kv)
		}
	}
	if o.MemoryMiB < 256 {
		return fmt.Errorf("guest Options.MemoryMiB %d: use at least 256", o.MemoryMiB)
	}
	return nil
}

// kernelCmdline is the guest kernel's command line before the job parameter:
// kernel messages (warnings and worse) on the serial console, a panic ends
// the VM at once (with -no-reboot), no speculation mitigations (TCG does not
// speculate, and they cost time).
const kernelCmdline = "console=ttyS0,115200 quiet loglevel=4 panic=-1 mitigations=off cryptomgr.notests rdinit=/init"

// plan returns the VM and the job of one guest run: pure, so the command
// line is checked by goldens.
func (p *prepared) plan(workDir, outSock, nonce string, testArgs, hostEnv []string) (qemu.Config, job.Job, error) {
	jobPath := filepath.Join(workDir, "job.json")
	param, err := job.CmdlineParam(jobPath)
	if err != nil {
		return qemu.Config{}, job.Job{}, err
	}
	j := job.Job{
		Nonce:      nonce,
		Args:       append([]string{p.exe}, testArgs...),
		Env:        guestEnv(hostEnv, p.o),
		Dir:        p.dir,
		Modules:    p.o.Modules,
		ModuleTree: p.moduleTree,
		Modprobe:   p.modprobe,
	}
	cfg := qemu.Config{
		WorkDir:    workDir,
		Firmware:   qemu.BIOS,
		MemoryMiB:  p.o.MemoryMiB,
		CPUs:       p.o.CPUs,
		NoWatchdog: true,
		Kernel:     p.kernel,
		Initrd:     p.initrd,
		Append:     kernelCmdline + " " + param,
		VirtFS:     []qemu.VirtFS{{Tag: job.RootTag, Path: "/", ReadOnly: true}},
		Consoles:   []string{outSock},
		RNG:        true,
		NoReboot:   true,
		NoNIC:      true,
	}
	for i, d := range p.o.Shared {
		tag := fmt.Sprintf("kilnshare%d", i)
		cfg.VirtFS = append(cfg.VirtFS, qemu.VirtFS{Tag: tag, Path: filepath.Clean(d)})
		j.Shares = append(j.Shares, job.Share{Tag: tag, Path: filepath.Clean(d)})
	}
	for _, d := range p.o.Disks {
		cfg.Disks = append(cfg.Disks, qemu.Disk{Path: d})
	}
	return cfg, j, j.Validate()
}

// defaultPath is the guest's PATH when the host has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// guestEnv is the test's environment inside: KILN_GUEST=1, root's basics,
// the host's PATH (with the sbin directories) and KILN_*, GOTRACEBACK,
// GODEBUG, TZ and locale variables, $KILN_GUEST_SHARED, then Options.Env.
func guestEnv(host []string, o Options) []string {
	env := []string{EnvInside + "=1", "HOME=/root", "USER=root", "LOGNAME=root", "TERM=dumb"}
	path := defaultPath
	for _, kv := range host {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH" && v != "":
			path = v
		case k == EnvInside || k == EnvShared:
		case strings.HasPrefix(k, "KILN_"), k == "GOTRACEBACK", k == "GODEBUG", k == "TZ",
			k == "LANG", strings.HasPrefix(k, "LC_"):
			env = append(env, kv)
		}
	}
	have := map[string]bool{}
	for _, d := range filepath.SplitList(path) {
		have[d] = true
	}
	for _, d := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin"} {
		if !have[d] {
			path += ":" + d
		}
	}
	shared := make([]string, len(o.Shared))
	for i, d := range o.Shared {
		shared[i] = filepath.Clean(d)
	}
	env = append(env, "PATH="+path, EnvShared+"="+strings.Join(shared, ":"))
	return append(env, o.Env...)
}

// guestTestTimeout is the -test.timeout of the test inside: long enough to
// finish, short enough that a hung guest test dumps its goroutines before
// the host's Timeout kills the VM.
func guestTestTimeout(total time.Duration) time.Duration {
	return max(total-30*time.Second, total*3/4)
}

// boot runs one guest with testArgs and reports its outcome on tb. For a
// benchmark it returns the metrics of the result line of benchName.
func (p *prepared) boot(tb testing.TB, testArgs []string, benchName string) map[string]float64 {
	tb.Helper()
	start := time.Now()
	workDir := tb.TempDir()
	nonce := make([]byte, 8)
	rand.Read(nonce)
	sockDir, err := os.MkdirTemp("", "kiln-guest-")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	outSock := filepath.Join(sockDir, "out")
	l, err := net.Listen("unix", outSock)
	if err != nil {
		tb.Fatalf("listening for the guest's output: %v", err)
	}
	defer l.Close()
	testArgs = append(testArgs, "-test.timeout="+guestTestTimeout(p.timeout).String())
	cfg, j, err := p.plan(workDir, outSock, hex.EncodeToString(nonce), testArgs, os.Environ())
	if err != nil {
		tb.Fatal(err)
	}
	if err := j.Write(filepath.Join(workDir, "job.json")); err != nil {
		tb.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	console := &lineWriter{emit: func(s string) { tb.Logf("console: [+%.1fs] %s", time.Since(start).Seconds(), s) }}
	vm, err := qemu.Start(ctx, cfg, qemu.Options{
		Console: console,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatalf("starting the guest: %v", err)
	}
	defer vm.Close()
	l.(*net.UnixListener).SetDeadline(time.Now().Add(30 * time.Second))
	conn, err := l.Accept()
	if err != nil {
		tb.Fatalf("QEMU did not connect the guest's output console: %v", err)
	}
	defer conn.Close()

	type scanned struct {
		m    job.Marker
		seen bool
		err  error
	}
	var metrics map[string]float64
	skipped := false // the test skipped itself inside
	done := make(chan scanned, 1)
	reported := make(chan struct{}, 1)
	go func() {
		m, seen, err := scanOutput(conn, j.Nonce, func(line string) {
			tb.Log("guest: " + line)
			if strings.HasPrefix(strings.TrimSpace(line), "--- SKIP: "+tb.Name()+" (") {
				skipped = true
			}
			if benchName != "" {
				if _, ms, ok := benchMetrics(benchName, line); ok {
					metrics = ms
				}
			}
		}, func(job.Marker) {
			select {
			case reported <- struct{}{}:
			default:
			}
		})
		done <- scanned{m, seen, err}
	}()

	timedOut := false
	select {
	case <-vm.Exited():
	case <-ctx.Done():
		timedOut = true
	case <-reported:
		// The guest powers off right after the marker.
		select {
		case <-vm.Exited():
		case <-ctx.Done():
		case <-time.After(20 * time.Second):
			tb.Log("guest: reported its exit status but did not power off within 20s; stopping QEMU")
		}
	}
	vm.Close()
	var res scanned
	select {
	case res = <-done:
	case <-time.After(5 * time.Second):
		conn.Close()
		res = <-done
	}
	console.Flush()
	elapsed := time.Since(start).Round(time.Millisecond)
	switch {
	case res.seen && res.m.Error != "":
		tb.Fatalf("the guest could not run the test: %s", res.m.Error)
	case res.seen && res.m.Exit != 0:
		tb.Fatalf("the test failed inside the guest (exit status %d after %v); its output is above", res.m.Exit, elapsed)
	case res.seen && skipped:
		tb.Skipf("skipped inside the guest (the reason is above), %v from QEMU start to power off", elapsed)
	case res.seen:
		tb.Logf("guest: passed, %v from QEMU start to power off", elapsed)
	case timedOut:
		tb.Fatalf("the guest did not finish within %v (Options.Timeout, bounded by the test's deadline); QEMU was killed", p.timeout)
	default:
		tb.Fatalf("the guest ended without reporting the test's exit status (QEMU: %v, output: %v) after %v; kernel console above; QEMU said: %s",
			vm.Wait(context.Background()), res.err, elapsed, strings.TrimSpace(vm.Stderr()))
	}
	return metrics
}
