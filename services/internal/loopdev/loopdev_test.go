package loopdev

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestAttachMount: an attached device mounts, MountSource names it, and
// with autoclear the device is gone once unmounted.
func TestAttachMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop devices on this kernel: %v", err)
	}
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("mksquashfs is not installed (apt-get install squashfs-tools)")
	}
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "tree", "etc"), 0o755)
	os.WriteFile(filepath.Join(d, "tree", "etc", "hello"), []byte("hi\n"), 0o644)
	img := filepath.Join(d, "image.squashfs")
	if out, err := exec.Command("mksquashfs", filepath.Join(d, "tree"), img, "-all-root", "-noappend", "-quiet").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v: %s", err, out)
	}
	dev, err := Attach(img, true)
	if err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(d, "m")
	os.Mkdir(mnt, 0o755)
	err = unix.Mount(dev.Path, mnt, "squashfs", unix.MS_RDONLY, "")
	dev.Close()
	if err != nil {
		t.Fatalf("mounting %s (held open until mounted): %v", dev.Path, err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "etc", "hello")); err != nil || string(b) != "hi\n" {
		t.Errorf("file through the loop device = %q, %v", b, err)
	}
	if src, ok := MountSource(mnt); !ok || src != dev.Path {
		t.Errorf("MountSource(%s) = %q, %v; want %s", mnt, src, ok, dev.Path)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := MountSource(mnt); ok {
		t.Errorf("MountSource(%s) after unmount = mounted", mnt)
	}
	if b, err := os.ReadFile("/sys/block/" + filepath.Base(dev.Path) + "/loop/backing_file"); err == nil {
		t.Errorf("%s still backed by %s after unmount (autoclear)", dev.Path, b)
	}
}
