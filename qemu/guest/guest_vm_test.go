package guest

// Tier 4: these boot guests. TestGuestKernel shares one guest across its
// subtests; the failure and timeout checks run helper tests of this binary
// in subprocesses (which are expected to fail), so the suite stays green.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/image/debs"
)

// diskPattern fills the extra disk TestGuestKernel attaches.
var diskPattern = []byte("kiln-guest-disk\n")

func TestGuestKernel(t *testing.T) {
	shared := t.TempDir()
	disk := filepath.Join(t.TempDir(), "disk.img")
	if !Inside() {
		if err := os.WriteFile(disk, bytes.Repeat(diskPattern, 65536), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A name only this run uses, for the writes that must stay in the guest.
	probe := "kiln-guest-probe-" + filepath.Base(filepath.Dir(shared))
	if !Enter(t, Options{
		Modules: []string{"nfsd", "target_core_file", "iscsi_target_mod", "iscsi_tcp", "veth"},
		Shared:  []string{shared},
		Disks:   []string{disk},
		Env:     []string{"KILN_GUEST_TEST_PROBE=" + probe},
	}) {
		b, err := os.ReadFile(filepath.Join(shared, "from-guest"))
		if err != nil || string(b) != "written inside the guest\n" {
			t.Errorf("shared dir: from-guest = %q, %v; want the guest's line", b, err)
		}
		for _, p := range []string{"/etc/" + probe, "/var/lib/" + probe, "/usr/" + probe} {
			if _, err := os.Stat(p); err == nil {
				os.Remove(p)
				t.Errorf("the guest's write to %s reached the host", p)
			}
		}
		return
	}
	shared = os.Getenv(EnvShared)
	probe = os.Getenv("KILN_GUEST_TEST_PROBE")

	t.Run("kernel and root", func(t *testing.T) {
		root, err := repoRoot(".")
		if err != nil {
			t.Fatal(err)
		}
		lock, err := debs.ReadLock(filepath.Join(root, "image", "packages.lock"))
		if err != nil {
			t.Fatal(err)
		}
		pin, _ := lock.Kernel()
		var u unix.Utsname
		unix.Uname(&u)
		if got := unix.ByteSliceToString(u.Release[:]); got != pin.KernelRelease() {
			t.Errorf("uname -r = %s, want the pinned %s", got, pin.KernelRelease())
		}
		if os.Getuid() != 0 {
			t.Errorf("uid = %d, want root", os.Getuid())
		}
		if wd, _ := os.Getwd(); !strings.HasSuffix(wd, "/qemu/guest") {
			t.Errorf("cwd = %s, want the package directory", wd)
		}
		mounts := readFile(t, "/proc/mounts")
		for _, want := range []string{"overlay / overlay", "configfs /sys/kernel/config configfs", "tmpfs /run tmpfs", "tmpfs /tmp tmpfs",
			"/lib/modules/" + pin.KernelRelease(), "nfsd /proc/fs/nfsd nfsd"} {
			if !strings.Contains(mounts, want) {
				t.Errorf("/proc/mounts lacks %q:\n%s", want, mounts)
			}
		}
		// Writable everywhere, but only in the guest: the host side checks.
		for _, p := range []string{"/etc/" + probe, "/var/lib/" + probe, "/usr/" + probe} {
			if err := os.WriteFile(p, []byte("guest only\n"), 0o644); err != nil {
				t.Errorf("writing %s in the guest: %v", p, err)
			}
		}
	})

	t.Run("nfsd versions", func(t *testing.T) {
		const v = "/proc/fs/nfsd/versions"
		if err := os.WriteFile(v, []byte("+3 -4\n"), 0); err != nil {
			t.Fatalf("writing %s: %v", v, err)
		}
		got := strings.Fields(readFile(t, v))
		if !contains(got, "+3") || !contains(got, "-4") {
			t.Errorf("%s after writing +3 -4 = %q", v, got)
		}
		if err := os.WriteFile(v, []byte("+4\n"), 0); err != nil {
			t.Fatal(err)
		}
		if got := strings.Fields(readFile(t, v)); !contains(got, "+4") {
			t.Errorf("%s after writing +4 = %q", v, got)
		}
	})

	t.Run("nfs export from tmp", func(t *testing.T) {
		for _, tool := range []string{"rpcbind", "exportfs", "rpc.mountd", "rpc.nfsd", "mount.nfs"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("%s is not installed on the host (apt-get install nfs-kernel-server nfs-common)", tool)
			}
		}
		// /tmp is a tmpfs, which nfsd can export (the 9p overlay root cannot);
		// for NFSv4 the export is the pseudo-root (fsid=0).
		exp, mnt := t.TempDir(), t.TempDir()
		writeFile(t, filepath.Join(exp, "f"), "exported\n")
		writeFile(t, "/etc/exports", exp+" 127.0.0.1(rw,no_root_squash,no_subtree_check,fsid=0)\n")
		for _, args := range [][]string{{"rpcbind", "-w"}, {"exportfs", "-ra"}, {"rpc.mountd"}, {"rpc.nfsd", "2"},
			{"mount", "-t", "nfs", "-o", "vers=4.2,soft,timeo=50,retrans=1", "127.0.0.1:/", mnt}} {
			if out, err := run(t, args...); err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		defer run(t, "rpc.nfsd", "0")
		defer run(t, "umount", mnt)
		if got := readFile(t, filepath.Join(mnt, "f")); got != "exported\n" {
			t.Errorf("reading over NFSv4.2 = %q", got)
		}
	})

	t.Run("configfs LIO fileio backstore", func(t *testing.T) {
		backing := filepath.Join(t.TempDir(), "lun0.img")
		if err := os.WriteFile(backing, make([]byte, 8<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		dev := "/sys/kernel/config/target/core/fileio_7/guesttest"
		if err := os.MkdirAll(dev, 0o755); err != nil {
			t.Fatalf("creating the backstore: %v", err)
		}
		defer os.Remove(dev)
		defer os.Remove(filepath.Dir(dev))
		writeFile(t, dev+"/control", fmt.Sprintf("fd_dev_name=%s,fd_dev_size=%d", backing, 8<<20))
		writeFile(t, dev+"/enable", "1")
		info := readFile(t, dev+"/info")
		if !strings.Contains(info, "File: "+backing) || !strings.Contains(info, "Size: 8388608") {
			t.Errorf("%s/info = %q, want the backing file and its size", dev, info)
		}
	})

	t.Run("hotplug iSCSI loopback disk", func(t *testing.T) {
		for _, tool := range []string{"iscsid", "iscsiadm"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("%s is not installed on the host (apt-get install open-iscsi)", tool)
			}
		}
		// A LIO target on lo with one fileio LUN; the initiator's new SCSI disk
		// needs sd_mod, which only PID 1's uevent listener loads.
		const cfg, iqn = "/sys/kernel/config/target", "iqn.2026-01.dev.kiln.guest:t0"
		backing := filepath.Join(t.TempDir(), "lun.img")
		if err := os.WriteFile(backing, bytes.Repeat(diskPattern, 1<<20/len(diskPattern)+1)[:1<<20], 0o644); err != nil {
			t.Fatal(err)
		}
		dev, tpg := cfg+"/core/fileio_8/hotplug", cfg+"/iscsi/"+iqn+"/tpgt_1"
		for _, d := range []string{dev, tpg + "/lun/lun_0", tpg + "/np/127.0.0.1:3260"} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		writeFile(t, dev+"/control", fmt.Sprintf("fd_dev_name=%s,fd_dev_size=%d", backing, 1<<20))
		writeFile(t, dev+"/enable", "1")
		if err := os.Symlink(dev, tpg+"/lun/lun_0/hotplug"); err != nil {
			t.Fatal(err)
		}
		for attr, v := range map[string]string{"generate_node_acls": "1", "authentication": "0",
			"demo_mode_write_protect": "0", "cache_dynamic_acls": "1"} {
			writeFile(t, tpg+"/attrib/"+attr, v)
		}
		writeFile(t, tpg+"/enable", "1")
		for _, args := range [][]string{{"iscsid"}, {"iscsiadm", "-m", "discovery", "-t", "st", "-p", "127.0.0.1"},
			{"iscsiadm", "-m", "node", "-T", iqn, "-p", "127.0.0.1", "--login"}} {
			if out, err := run(t, args...); err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		defer run(t, "iscsiadm", "-m", "node", "-T", iqn, "-p", "127.0.0.1", "--logout")
		var disk string
		for deadline := time.Now().Add(30 * time.Second); disk == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if m, _ := filepath.Glob("/sys/class/scsi_disk/*/device/block/sd*"); len(m) > 0 {
				disk = "/dev/" + filepath.Base(m[0])
			}
		}
		if disk == "" {
			t.Fatalf("no SCSI disk appeared after the iSCSI login (sd_mod loaded: %v)", exists("/sys/module/sd_mod"))
		}
		b := make([]byte, len(diskPattern))
		f, err := os.Open(disk)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.ReadAt(b, 0); err != nil || !bytes.Equal(b, diskPattern) {
			t.Errorf("%s over iSCSI starts with %q, %v; want %q", disk, b, err, diskPattern)
		}
	})

	t.Run("netns veth ping", func(t *testing.T) {
		defer run(t, "ip", "netns", "del", "gt-a")
		defer run(t, "ip", "netns", "del", "gt-b")
		for _, args := range [][]string{
			{"ip", "netns", "add", "gt-a"}, {"ip", "netns", "add", "gt-b"},
			{"ip", "link", "add", "gt-va", "netns", "gt-a", "type", "veth", "peer", "name", "gt-vb", "netns", "gt-b"},
			{"ip", "-n", "gt-a", "addr", "add", "10.99.0.1/24", "dev", "gt-va"},
			{"ip", "-n", "gt-b", "addr", "add", "10.99.0.2/24", "dev", "gt-vb"},
			{"ip", "-n", "gt-a", "link", "set", "gt-va", "up"}, {"ip", "-n", "gt-b", "link", "set", "gt-vb", "up"},
		} {
			if out, err := run(t, args...); err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		if out, err := run(t, "ip", "netns", "exec", "gt-a", "ping", "-c", "1", "-W", "5", "10.99.0.2"); err != nil {
			t.Fatalf("ping across the veth pair: %v\n%s", err, out)
		}
	})

	t.Run("host binaries", func(t *testing.T) {
		if out, err := run(t, "ip", "-V"); err != nil || !strings.Contains(out, "iproute2") {
			t.Errorf("ip -V = %q, %v", out, err)
		}
		if _, err := exec.LookPath("iscsiadm"); err != nil {
			t.Skip("iscsiadm is not installed on the host (apt-get install open-iscsi)")
		}
		if out, err := run(t, "iscsiadm", "--version"); err != nil || !strings.Contains(out, "iscsiadm version") {
			t.Errorf("iscsiadm --version = %q, %v", out, err)
		}
	})

	t.Run("request_module", func(t *testing.T) {
		// Creating a dummy link makes the kernel ask for rtnl-link-dummy.
		if out, err := run(t, "ip", "link", "add", "gt-dummy0", "type", "dummy"); err != nil {
			t.Fatalf("ip link add type dummy: %v\n%s", err, out)
		}
		run(t, "ip", "link", "del", "gt-dummy0")
		if _, err := os.Stat("/sys/module/dummy"); err != nil {
			t.Errorf("module dummy not loaded on demand: %v", err)
		}
		if out, err := run(t, "modprobe", "-n", "-v", "xfs"); err != nil || !strings.Contains(out, "xfs.ko") {
			t.Errorf("modprobe -n -v xfs (host kmod, binary indexes) = %q, %v", out, err)
		}
	})

	t.Run("disk", func(t *testing.T) {
		b := make([]byte, len(diskPattern))
		f, err := os.Open("/dev/vda")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.ReadAt(b, int64(len(diskPattern))*100); err != nil || !bytes.Equal(b, diskPattern) {
			t.Errorf("/dev/vda at block 100 = %q, %v; want %q", b, err, diskPattern)
		}
	})

	t.Run("shared dir", func(t *testing.T) {
		writeFile(t, filepath.Join(shared, "from-guest"), "written inside the guest\n")
	})
}

// helperEnv selects a helper test in a subprocess.
const helperEnv = "KILN_GUEST_TEST_HELPER"

// TestHelperGuestFails is run by TestGuestFailureFailsHost.
func TestHelperGuestFails(t *testing.T) {
	if os.Getenv(helperEnv) != "fail" {
		t.Skip("helper of TestGuestFailureFailsHost")
	}
	if !Enter(t, Options{CPUs: 1, MemoryMiB: 512}) {
		return
	}
	t.Fatal("deliberate failure inside the guest")
}

// TestHelperGuestSkips is run by TestGuestSkipSkipsHost.
func TestHelperGuestSkips(t *testing.T) {
	if os.Getenv(helperEnv) != "skip" {
		t.Skip("helper of TestGuestSkipSkipsHost")
	}
	if !Enter(t, Options{CPUs: 1, MemoryMiB: 512}) {
		return
	}
	t.Skip("deliberate skip inside the guest")
}

// TestHelperGuestHangs is run by TestGuestTimeoutKillsVM: its guest halts
// (no marker, no power off), as a deadlocked kernel would.
func TestHelperGuestHangs(t *testing.T) {
	if os.Getenv(helperEnv) != "hang" {
		t.Skip("helper of TestGuestTimeoutKillsVM")
	}
	if !Enter(t, Options{CPUs: 1, MemoryMiB: 512, Timeout: 25 * time.Second}) {
		return
	}
	unix.Reboot(unix.LINUX_REBOOT_CMD_HALT)
	select {}
}

// runHelper runs one helper test of this binary in a subprocess tagged with
// a unique environment variable ("KEY=value", returned as mark), and returns
// its output, error and duration. It skips t when the helper skipped for
// lack of the guest tier.
func runHelper(t *testing.T, mode, test string) (out string, err error, took time.Duration, mark string) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a QEMU guest; skipped with -short")
	}
	tag := make([]byte, 8)
	rand.Read(tag)
	mark = "KILN_GUEST_TEST_MARK=" + hex.EncodeToString(tag)
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, mark)
	start := time.Now()
	b, err := cmd.CombinedOutput()
	if took = time.Since(start); strings.Contains(string(b), "guest tier skipped") {
		t.Skipf("guest tier unavailable:\n%s", b)
	}
	t.Logf("helper %s took %v", test, took.Round(time.Millisecond))
	return string(b), err, took, mark
}

// processesWith returns the PIDs whose environment holds kv.
func processesWith(kv string) []string {
	var pids []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err == nil && bytes.Contains(append([]byte{0}, env...), []byte("\x00"+kv+"\x00")) {
			pids = append(pids, filepath.Base(d))
		}
	}
	return pids
}

func TestGuestFailureFailsHost(t *testing.T) {
	t.Parallel()
	out, err, _, _ := runHelper(t, "fail", "TestHelperGuestFails")
	if err == nil {
		t.Fatalf("a failing guest test left the host test passing:\n%s", out)
	}
	for _, want := range []string{"deliberate failure inside the guest", "the test failed inside the guest (exit status 1",
		"--- FAIL: TestHelperGuestFails"} {
		if !strings.Contains(out, want) {
			t.Errorf("helper output lacks %q:\n%s", want, out)
		}
	}
}

func TestGuestSkipSkipsHost(t *testing.T) {
	t.Parallel()
	out, err, _, _ := runHelper(t, "skip", "TestHelperGuestSkips")
	if err != nil || !strings.Contains(out, "deliberate skip inside the guest") ||
		!strings.Contains(out, "--- SKIP: TestHelperGuestSkips") || !strings.Contains(out, "skipped inside the guest") {
		t.Errorf("a test skipping inside the guest: helper error %v, output:\n%s", err, out)
	}
}

func TestGuestTimeoutKillsVM(t *testing.T) {
	t.Parallel()
	out, err, took, mark := runHelper(t, "hang", "TestHelperGuestHangs")
	if err == nil || !strings.Contains(out, "did not finish within 25s") {
		t.Errorf("a hung guest: helper error %v, output:\n%s", err, out)
	}
	// 25s of Timeout, the preparation and QEMU's teardown, with room for a
	// loaded machine; a missing kill would hang until go test's timeout.
	if took > 90*time.Second {
		t.Errorf("the helper took %v for a 25s Timeout", took)
	}
	if pids := processesWith(mark); len(pids) > 0 {
		t.Errorf("processes of the killed guest run on: %v", pids)
	}
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	return string(out), err
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatalf("writing %s: %v", p, err)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// BenchmarkGuest9p measures the 9p root from inside a guest: starting this
// test binary with a cold page cache (what a guest test pays once before it
// runs) and reading it sequentially. make bench runs it through EnterB.
func BenchmarkGuest9p(b *testing.B) {
	if !EnterB(b, Options{}) {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(exe)
	if err != nil {
		b.Fatal(err)
	}
	var read, execs time.Duration
	for b.Loop() {
		dropCaches(b)
		start := time.Now()
		if out, err := exec.Command(exe, "-test.run=^$").CombinedOutput(); err != nil {
			b.Fatalf("running %s in the guest: %v\n%s", exe, err, out)
		}
		execs += time.Since(start)
		dropCaches(b)
		start = time.Now()
		if _, err := os.ReadFile(exe); err != nil {
			b.Fatal(err)
		}
		read += time.Since(start)
	}
	b.ReportMetric(float64(execs.Milliseconds())/float64(b.N), "cold-exec-ms")
	b.ReportMetric(float64(fi.Size())/1e6/read.Seconds(), "cold-read-MB/s")
	b.ReportMetric(float64(fi.Size())/1e6, "binary-MB")
}

func dropCaches(b *testing.B) {
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		b.Fatalf("dropping the guest's caches: %v", err)
	}
}

func TestEnterBReportsGuestMetrics(t *testing.T) {
	t.Parallel()
	out, err := runBench(t, "BenchmarkGuest9p")
	if err != nil {
		t.Fatalf("the guest benchmark failed: %v\n%s", err, out)
	}
	// The host's result line carries the guest's own metrics.
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "BenchmarkGuest9p") {
			line = l
		}
	}
	for _, unit := range []string{"cold-exec-ms", "cold-read-MB/s", "binary-MB"} {
		if !strings.Contains(line, unit) {
			t.Errorf("host result line %q lacks the guest's %s:\n%s", line, unit, out)
		}
	}
	t.Logf("%s", line)
}

// runBench runs one benchmark of this binary (-test.benchtime=1x) in a
// subprocess.
func runBench(t *testing.T, name string) (string, error) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a QEMU guest; skipped with -short")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^"+name+"$", "-test.benchtime=1x", "-test.v")
	b, err := cmd.CombinedOutput()
	if strings.Contains(string(b), "guest tier skipped") {
		t.Skipf("guest tier unavailable:\n%s", b)
	}
	return string(b), err
}
