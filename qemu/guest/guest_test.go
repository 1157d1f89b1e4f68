package guest

// Tier 1: the command line, the job, the environment, the output parsers and
// the module closure, without booting anything.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/qemu/guest/internal/job"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestAnchor(t *testing.T) {
	tests := map[string]string{
		"TestExport":                 "^TestExport$",
		"TestExport/nfs_v4.1":        `^TestExport$/^nfs_v4\.1$`,
		"BenchmarkRead/size=1M/(x)+": `^BenchmarkRead$/^size=1M$/^\(x\)\+$`,
	}
	for in, want := range tests {
		if got := anchor(in); got != want {
			t.Errorf("anchor(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPlanGolden pins the guest's whole QEMU command line and job file.
func TestPlanGolden(t *testing.T) {
	p := &prepared{
		o: Options{
			Modules: []string{"nfsd", "iscsi_target_mod"}, Shared: []string{"/tmp/results/"},
			Disks: []string{"/tmp/lun.qcow2"}, Env: []string{"KILN_NFS_BENCH=1"},
		}.withDefaults(),
		kernel: "/src/out/cache/guest/kernel2-x/vmlinux", initrd: "/src/out/cache/guest/kernel2-x/initrd-y.cpio",
		moduleTree: "/src/out/cache/guest/kernel2-x/lib/modules/6.1.0-56-amd64", modprobe: "/usr/sbin/modprobe",
		exe: "/tmp/go-build1/b001/nfs.test", dir: "/src/services/nfs", timeout: 10 * time.Minute,
	}
	host := []string{"PATH=/usr/local/go/bin:/usr/bin:/bin", "HOME=/home/ci", "KILN_IMAGE=/src/out/kiln.qcow2",
		"KILN_GUEST=1", "GOTRACEBACK=all", "SSH_AUTH_SOCK=/x", "LANG=C.UTF-8"}
	cfg, j, err := p.plan("/tmp/TestX/001", "/tmp/kiln-guest-1/out", "0123456789abcdef",
		[]string{"-test.run=^TestExport$", "-test.v=true"}, host)
	if err != nil {
		t.Fatal(err)
	}
	args, err := qemu.Args(cfg, "/s/serial", "/s/qmp")
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got := []byte(strings.Join(args, "\n") + "\n\n" + string(jb) + "\n")
	golden := filepath.Join("testdata", "plan.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("plan mismatch (-want +got), run go test -update if intended:\n%s", diff)
	}
	for _, must := range []string{"-accel\ntcg", "-nic\nnone", "readonly=on", "-no-reboot"} {
		if !bytes.Contains(got, []byte(must)) {
			t.Errorf("the guest command line lacks %q", must)
		}
	}
}

func TestGuestEnv(t *testing.T) {
	host := []string{"PATH=/usr/local/go/bin:/usr/bin", "KILN_BIN=/x/kiln", "KILN_GUEST=1", "KILN_GUEST_SHARED=/old",
		"KILN_GUEST_TEST_HELPER=fail", "HOME=/home/me", "GOMAXPROCS=8", "LC_ALL=C", "AWS_SECRET=x"}
	got := guestEnv(host, Options{Shared: []string{"/a", "/b"}, Env: []string{"FOO=bar"}})
	want := []string{"KILN_GUEST=1", "HOME=/root", "USER=root", "LOGNAME=root", "TERM=dumb",
		"KILN_BIN=/x/kiln", "KILN_GUEST_TEST_HELPER=fail", "LC_ALL=C",
		"PATH=/usr/local/go/bin:/usr/bin:/usr/local/sbin:/usr/sbin:/sbin", "KILN_GUEST_SHARED=/a:/b", "FOO=bar"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("guestEnv() mismatch (-want +got):\n%s", diff)
	}
	if got := guestEnv(nil, Options{}); !slices.Contains(got, "PATH="+defaultPath) {
		t.Errorf("guestEnv(no PATH) = %q, want PATH=%s", got, defaultPath)
	}
}

func TestGuestTestTimeout(t *testing.T) {
	for total, want := range map[time.Duration]time.Duration{
		10 * time.Minute: 9*time.Minute + 30*time.Second,
		time.Minute:      45 * time.Second,
		20 * time.Second: 15 * time.Second,
	} {
		if got := guestTestTimeout(total); got != want {
			t.Errorf("guestTestTimeout(%v) = %v, want %v", total, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	tests := []struct {
		o    Options
		want string
	}{
		{Options{Shared: []string{"rel"}}, "Shared[0]"},
		{Options{Shared: []string{"/"}}, "Shared[0]"},
		{Options{Shared: []string{file}}, "not a directory"},
		{Options{Shared: []string{dir, filepath.Join(dir, "missing")}}, "Shared[1]"},
		{Options{Disks: []string{filepath.Join(dir, "missing.img")}}, "Disks[0]"},
		{Options{Env: []string{"NOEQUALS"}}, "Env[0]"},
		{Options{MemoryMiB: 128}, "MemoryMiB"},
	}
	for _, tt := range tests {
		err := validate(tt.o.withDefaults())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("validate(%+v) = %v, want an error naming %q", tt.o, err, tt.want)
		}
	}
	if err := validate(Options{Shared: []string{dir}, Disks: []string{file}, Env: []string{"A=b"}}.withDefaults()); err != nil {
		t.Errorf("validate(good) = %v", err)
	}
}

func TestScanOutput(t *testing.T) {
	const n = "0123abcd"
	in := "=== RUN   TestX\r\n" + strings.Repeat("x", maxLine+10) + "\n\n" +
		"kiln-guest ffff exit 0\n" + // another nonce: output
		"--- PASS: TestX (0.01s)\nPASS" + // no newline before the marker's own
		"\n" + job.ExitLine(n, 0) + "\n" +
		"after\n" + "\n" + job.ExitLine(n, 3) + "\n"
	var lines []string
	var markers []job.Marker
	m, seen, err := scanOutput(strings.NewReader(in), n, func(s string) { lines = append(lines, s) },
		func(m job.Marker) { markers = append(markers, m) })
	if err != nil || !seen || m.Exit != 3 || len(markers) != 2 {
		t.Fatalf("scanOutput() = %+v, %v, %v, markers %+v; want the last marker, exit 3", m, seen, err, markers)
	}
	want := []string{"=== RUN   TestX", strings.Repeat("x", maxLine), strings.Repeat("x", 10),
		"kiln-guest ffff exit 0", "--- PASS: TestX (0.01s)", "PASS", "after"}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("scanOutput() lines mismatch (-want +got):\n%s", diff)
	}
	if _, seen, _ := scanOutput(strings.NewReader("PASS\nkiln-guest "+n+" exit"), n, func(string) {}, nil); seen {
		t.Error("scanOutput() saw a marker in a truncated line")
	}
}

// FuzzScanOutput feeds arbitrary guest output followed by the real marker:
// the marker is always found, and every other byte is passed on.
func FuzzScanOutput(f *testing.F) {
	f.Add([]byte("=== RUN   TestX\n--- PASS: TestX\nPASS\n"), uint8(0))
	f.Add([]byte("no newline at the end"), uint8(1))
	f.Add([]byte("kiln-guest 0123abcd exit 9\n\r\n\x00\xff"), uint8(255))
	f.Fuzz(func(t *testing.T, out []byte, code uint8) {
		const n = "0123abcd"
		in := append(append([]byte(nil), out...), "\n"+job.ExitLine(n, int(code))+"\n"...)
		var got bytes.Buffer
		m, seen, err := scanOutput(bytes.NewReader(in), n, func(s string) { got.WriteString(s) }, nil)
		if err != nil || !seen || m.Exit != int(code) || m.Error != "" {
			t.Fatalf("scanOutput(%q) = %+v, %v, %v; want exit %d", in, m, seen, err, code)
		}
		// Lines are passed on without their line ends; marker lines for the
		// nonce are held back.
		var want bytes.Buffer
		for _, l := range strings.Split(string(out), "\n") {
			if _, ok := job.ParseMarker(n, strings.TrimRight(l, "\r")); !ok {
				want.WriteString(strings.TrimRight(l, "\r\n"))
			}
		}
		if len(out) < maxLine && got.String() != want.String() {
			t.Fatalf("scanOutput(%q) passed on %q, want %q", out, got.String(), want.String())
		}
	})
}

func TestLineWriter(t *testing.T) {
	var got []string
	w := &lineWriter{emit: func(s string) { got = append(got, s) }}
	for _, chunk := range []string{"[    0.1] Linux", " version\r\n", "kiln-guest: ready\r\n\r\npart", "ial"} {
		w.Write([]byte(chunk))
	}
	w.Flush()
	want := []string{"[    0.1] Linux version", "kiln-guest: ready", "", "partial"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lineWriter mismatch (-want +got):\n%s", diff)
	}
}

func TestBenchMetrics(t *testing.T) {
	tests := []struct {
		line  string
		n     int
		want  map[string]float64
		valid bool
	}{
		{"BenchmarkRead-2   \t       3\t 123456 ns/op\t  45.50 MB/s\t 12 B/op\t 1 allocs/op", 3,
			map[string]float64{"ns/op": 123456, "MB/s": 45.5, "B/op": 12, "allocs/op": 1}, true},
		{"BenchmarkRead \t 1\t 2000 ns/op\t 7.000 iops", 1, map[string]float64{"ns/op": 2000, "iops": 7}, true},
		{"BenchmarkReadAll-2 1 5 ns/op", 0, nil, false}, // another benchmark
		{"BenchmarkRead-x 1 5 ns/op", 0, nil, false},
		{"BenchmarkRead-2 1 5", 0, nil, false},
		{"BenchmarkRead-2 0 5 ns/op", 0, nil, false},
		{"BenchmarkRead-2 1 five ns/op", 0, nil, false},
		{"--- BENCH: BenchmarkRead-2", 0, nil, false},
	}
	for _, tt := range tests {
		n, got, ok := benchMetrics("BenchmarkRead", tt.line)
		if ok != tt.valid || n != tt.n || !cmp.Equal(got, tt.want) {
			t.Errorf("benchMetrics(%q) = %d, %v, %v, want %d, %v, %v", tt.line, n, got, ok, tt.n, tt.want, tt.valid)
		}
	}
}

func TestBzPayload(t *testing.T) {
	img := make([]byte, 8192)
	img[0x1f1] = 3 // setup sectors: the kernel proper starts at 4*512
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x20f)
	binary.LittleEndian.PutUint32(img[0x248:], 100)
	binary.LittleEndian.PutUint32(img[0x24c:], 6)
	copy(img[4*512+100:], xzMagic)
	got, err := bzPayload(img)
	if err != nil || !bytes.Equal(got, xzMagic) {
		t.Fatalf("bzPayload() = %x, %v, want the xz magic", got, err)
	}
	binary.LittleEndian.PutUint32(img[0x24c:], 1<<20)
	if _, err := bzPayload(img); err == nil {
		t.Error("bzPayload() accepted a payload past the end")
	}
	binary.LittleEndian.PutUint16(img[0x206:], 0x207)
	if _, err := bzPayload(img); err == nil {
		t.Error("bzPayload() accepted boot protocol 2.07")
	}
	if _, err := bzPayload([]byte("MZ not a kernel")); err == nil {
		t.Error("bzPayload() accepted a short file")
	}
	if hasPVHEntry(img) {
		t.Error("hasPVHEntry(bzImage) = true")
	}
}

// testStore opens the kernel store (unpacking the pinned package on first
// use, ~8 s) or skips.
func testStore(t *testing.T) *kernelStore {
	t.Helper()
	root, err := repoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	store, err := openStore(context.Background(), root, filepath.Join(root, "out", "cache", "guest"))
	if err != nil {
		t.Skipf("kernel store unavailable: %v", err)
	}
	return store
}

func TestModuleClosure(t *testing.T) {
	store := testStore(t)
	names := func(names ...string) []string {
		mods, err := store.closure(names)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range mods {
			out = append(out, m.Name)
		}
		return out
	}
	tests := []struct {
		request []string
		want    []string
		not     []string
	}{
		{job.InitramfsModules, []string{"virtio_pci", "virtio_pci_modern_dev", "virtio_console", "9pnet", "9pnet_virtio",
			"9p", "netfs", "fscache", "overlay"}, []string{"nfsd", "ext4"}},
		{[]string{"nfsd"}, []string{"nfsd", "sunrpc", "lockd", "grace", "auth_rpcgss", "nfs_acl"}, []string{"nfs", "9p"}},
		{[]string{"nfsv4"}, []string{"nfsv4", "nfs", "sunrpc", "lockd", "dns_resolver", "fscache", "netfs"}, []string{"nfsd"}},
		{[]string{"target_core_file", "iscsi_target_mod"}, []string{"target_core_mod", "target_core_file", "iscsi_target_mod",
			"configfs"}, []string{"iscsi_tcp"}},
		{[]string{"iscsi_tcp"}, []string{"iscsi_tcp", "libiscsi", "libiscsi_tcp", "scsi_transport_iscsi"}, []string{"target_core_mod"}},
		{[]string{"veth"}, []string{"veth"}, []string{"bridge"}},
	}
	for _, tt := range tests {
		got := names(tt.request...)
		for _, w := range tt.want {
			if !slices.Contains(got, w) {
				t.Errorf("closure(%v) = %v, lacks %s", tt.request, got, w)
			}
		}
		for _, n := range tt.not {
			if slices.Contains(got, n) {
				t.Errorf("closure(%v) = %v, has %s", tt.request, got, n)
			}
		}
	}
	if _, err := store.closure([]string{"nfsd", "no_such_module"}); err == nil ||
		!strings.Contains(err.Error(), "Options.Modules") || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("closure(unknown) error = %v, want one naming Options.Modules and the module", err)
	}
	// The tree the guest binds at /lib/modules/<release> has every index.
	for _, f := range []string{"modules.dep", "modules.alias", "modules.softdep", "modules.dep.bin", "modules.alias.bin",
		"modules.builtin.bin", "kernel/fs/nfsd/nfsd.ko"} {
		if _, err := os.Stat(filepath.Join(store.modDir(), f)); err != nil {
			t.Errorf("module tree: %v", err)
		}
	}
	if k := store.kernel(); filepath.Base(k) != "vmlinux" {
		t.Errorf("kernel() = %s, want the PVH vmlinux", k)
	} else if b, err := os.ReadFile(k); err != nil || !hasPVHEntry(b) {
		t.Errorf("%s has no PVH entry note (%v)", k, err)
	}
}
