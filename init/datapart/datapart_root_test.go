package datapart

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/init/blockdev"
	"kiln.dev/kiln/internal/testlog"
)

// loopDisk builds a kiln-like GPT image (data partition 4 MiB, labeled
// kiln-data) and attaches it to a loop device with partitions. It returns the
// image path and the loop device's kernel name.
func loopDisk(t *testing.T, size int64) (string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: attaches loop devices and mounts file systems")
	}
	for _, tool := range []string{"sgdisk", "losetup", "mke2fs", "e2fsck", "resize2fs", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (gdisk, util-linux, e2fsprogs)", tool)
		}
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	out, err := exec.Command("sgdisk",
		"-n", "1:2048:+8M", "-t", "1:EF00", "-c", "1:kiln-esp",
		"-n", "2:0:+8M", "-c", "2:kiln-root-a",
		"-n", "3:0:+8M", "-c", "3:kiln-root-b",
		"-n", "4:0:+4M", "-t", "4:8300", "-c", "4:kiln-data", img).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	out, err = exec.Command("losetup", "-P", "-f", "--show", img).CombinedOutput()
	if err != nil {
		t.Skipf("cannot attach a loop device here: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	name := filepath.Base(dev)
	p4 := "/sys/class/block/" + name + "/" + name + "p4"
	time.Sleep(200 * time.Millisecond)
	if _, err := os.Stat(p4); err != nil {
		// Some kernels ignore the partition scan of losetup -P; add them by hand.
		if out, err := exec.Command("partx", "-a", dev).CombinedOutput(); err != nil {
			t.Logf("partx -a %s: %v: %s", dev, err, out)
		}
	}
	waitFor(t, p4)
	waitFor(t, "/dev/"+name+"p4")
	return img, name
}

func waitFor(t *testing.T, p string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(p); err == nil {
			return
		}
	}
	t.Fatalf("%s did not appear within 5s", p)
}

func newManager(t *testing.T, disk string) *Manager {
	mnt := t.TempDir()
	t.Cleanup(func() { unix.Unmount(mnt, 0) })
	var out bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tool output:\n%s", out.String())
		}
	})
	return &Manager{Sys: blockdev.Default, Disk: disk, Mountpoint: mnt, Out: &out, Log: testlog.New(t, slog.LevelInfo)}
}

func sgdiskVerify(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command("sgdisk", "-v", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
}

func TestSetupBlankThenGrowRoot(t *testing.T) {
	img, disk := loopDisk(t, 64<<20)
	m := newManager(t, disk)
	st, err := m.Setup(context.Background())
	if err != nil {
		t.Fatalf("Setup(blank): %v", err)
	}
	if !st.Formatted || !st.Mounted || st.GrewBy == 0 || st.Device != "/dev/"+disk+"p4" {
		t.Errorf("Setup(blank) = %+v, want formatted, mounted, grown, on %sp4", st, disk)
	}
	for _, d := range []string{"state", "log", "config"} {
		if fi, err := os.Stat(filepath.Join(m.Mountpoint, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s missing on the data partition: %v", d, err)
		}
	}
	os.WriteFile(filepath.Join(m.Mountpoint, "state", "keep"), []byte("precious"), 0o644)
	sgdiskVerify(t, img)
	if err := unix.Unmount(m.Mountpoint, 0); err != nil {
		t.Fatal(err)
	}

	// The disk grows (image flashed to a bigger stick): the partition and the
	// file system follow, the data stays.
	if err := os.Truncate(img, 160<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("losetup", "-c", "/dev/"+disk).CombinedOutput(); err != nil {
		t.Fatalf("losetup -c: %v\n%s", err, out)
	}
	st, err = m.Setup(context.Background())
	if err != nil {
		t.Fatalf("Setup(ext4, bigger disk): %v", err)
	}
	if st.Formatted || st.Signature.Kind != Ext || st.GrewBy != 96<<20 {
		t.Errorf("Setup(ext4, bigger disk) = %+v, want ext, not formatted, grown by 96 MiB", st)
	}
	if b, err := os.ReadFile(filepath.Join(m.Mountpoint, "state", "keep")); string(b) != "precious" {
		t.Errorf("data after grow = %q, %v; want it kept", b, err)
	}
	// Partition 4 now spans 25 MiB to 159 MiB (the last MiB holds the backup GPT).
	if in, err := m.Inspect(); err != nil || in.Signature.Bytes != 134<<20 {
		t.Errorf("file system size after grow = %d MiB (%v), want 134 MiB", in.Signature.Bytes>>20, err)
	}
	sgdiskVerify(t, img)
	unix.Unmount(m.Mountpoint, 0)

	// A third boot changes nothing.
	st, err = m.Setup(context.Background())
	if err != nil || st.GrewBy != 0 || st.Formatted {
		t.Errorf("Setup(third boot) = %+v, %v; want nothing changed", st, err)
	}
}

func partHash(t *testing.T, dev string) [32]byte {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

func TestSetupRefusesForeignUntilFormatRoot(t *testing.T) {
	_, disk := loopDisk(t, 64<<20)
	dev := "/dev/" + disk + "p4"
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("XFSB"), 0)
	f.Close()
	before := partHash(t, dev)
	m := newManager(t, disk)
	st, err := m.Setup(context.Background())
	if !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "xfs") || !strings.Contains(err.Error(), "recovery menu") {
		t.Fatalf("Setup(xfs) error = %v, want ErrForeign naming xfs and the recovery menu", err)
	}
	if st.Mounted {
		t.Error("Setup(xfs) mounted it")
	}
	if partHash(t, dev) != before {
		t.Fatal("Setup(xfs) changed the partition")
	}
	if err := m.Format(context.Background()); err != nil {
		t.Fatalf("Format: %v", err)
	}
	st, err = m.Inspect()
	if err != nil || st.Signature.Kind != Ext || st.Signature.Label != "kiln-data" {
		t.Errorf("Inspect after Format = %+v, %v; want ext4 labeled kiln-data", st, err)
	}
}

func TestSetupRefusesCorruptRoot(t *testing.T) {
	_, disk := loopDisk(t, 64<<20)
	dev := "/dev/" + disk + "p4"
	if out, err := exec.Command("mke2fs", "-q", "-t", "ext4", "-L", "kiln-data", dev).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	// Clearing the root directory's inode is beyond what e2fsck -p may fix;
	// state 2 marks the file system as having errors, as the kernel would.
	for _, req := range []string{"clri <2>", "ssv state 2"} {
		if out, err := exec.Command("debugfs", "-w", "-R", req, dev).CombinedOutput(); err != nil {
			t.Fatalf("debugfs %s: %v\n%s", req, err, out)
		}
	}
	m := newManager(t, disk)
	_, err := m.Setup(context.Background())
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "e2fsck -f "+dev) {
		t.Fatalf("Setup(corrupt) error = %v, want ErrCorrupt telling how to repair", err)
	}
}
