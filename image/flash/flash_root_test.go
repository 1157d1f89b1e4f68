package flash

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// loop attaches a zero-filled file of size bytes to a loop device (with
// partition scanning) and returns the device path and the backing file.
func loop(t *testing.T, size int64) (string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to attach loop devices")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("skipping: losetup not installed (util-linux)")
	}
	f := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-P", "-f", "--show", f).CombinedOutput()
	if err != nil {
		t.Skipf("skipping: cannot attach a loop device here: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev, f
}

// gptImage makes a small GPT disk image with sgdisk (two partitions).
func gptImage(t *testing.T, size int64) string {
	t.Helper()
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Skip("skipping: sgdisk not installed (gdisk)")
	}
	p := filepath.Join(t.TempDir(), "kiln.img")
	b := randomImage(int(size))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sgdisk", "-o", "-n", "1:2048:+4M", "-n", "2:0:+4M", p).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	return p
}

// TestFlashLoop writes an image to a loop device after a typed confirmation,
// reads it back through the kernel, and sees the image's partitions appear.
func TestFlashLoop(t *testing.T) {
	img := gptImage(t, 12<<20)
	dev, backing := loop(t, 32<<20)
	var out bytes.Buffer
	name := filepath.Base(dev)
	res, err := Host().Flash(context.Background(), Request{
		Image: img, Device: dev, In: strings.NewReader(name + "\n"), Out: &out,
	})
	if err != nil {
		t.Fatalf("Flash: %v\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())
	want, _ := os.ReadFile(img)
	got, _ := os.ReadFile(backing)
	if !bytes.Equal(got[:len(want)], want) {
		t.Error("loop device's backing file does not hold the image")
	}
	if !bytes.Equal(got[len(got)-1<<20:], make([]byte, 1<<20)) {
		t.Error("last MiB of the device not cleared")
	}
	for _, w := range []string{"type the device name (" + name + ")", "writing ", "verifying ", "100%", "verified", res.SHA256} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q", w)
		}
	}
	// The kernel re-read the new table, where it reads GPTs at all.
	if !kernelScansGPT(t, img) {
		t.Log("this kernel shows no partitions even for a GPT attached with losetup -P: BLKRRPART not checked")
		return
	}
	if !appears(name + "p2") {
		t.Errorf("%sp2 did not appear after the flash (BLKRRPART)", name)
	}
}

// appears waits up to 3 s for a block device in sysfs.
func appears(name string) bool {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat("/sys/class/block/" + name); err == nil {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// kernelScansGPT attaches a copy of a GPT image with partition scanning and
// reports whether its partitions appear (kernels without EFI_PARTITION show none).
func kernelScansGPT(t *testing.T, img string) bool {
	b, _ := os.ReadFile(img)
	cp := filepath.Join(t.TempDir(), "probe.img")
	os.WriteFile(cp, b, 0o644)
	out, err := exec.Command("losetup", "-P", "-f", "--show", cp).CombinedOutput()
	if err != nil {
		return false
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", dev).Run()
	return appears(filepath.Base(dev) + "p1")
}

// TestFlashRefusals: not typed, too small, mounted, the host's own disk.
func TestFlashRefusals(t *testing.T) {
	img := gptImage(t, 12<<20)
	ctx := context.Background()

	t.Run("not typed", func(t *testing.T) {
		dev, backing := loop(t, 32<<20)
		var out bytes.Buffer
		_, err := Host().Flash(ctx, Request{Image: img, Device: dev, In: strings.NewReader("yes\n"), Out: &out})
		if !errors.Is(err, ErrCancelled) {
			t.Fatalf("Flash with a wrong answer = %v, want ErrCancelled", err)
		}
		if b, _ := os.ReadFile(backing); !bytes.Equal(b, make([]byte, len(b))) {
			t.Error("a cancelled flash wrote to the device")
		}
	})
	t.Run("too small", func(t *testing.T) {
		dev, _ := loop(t, 8<<20)
		_, err := Host().Flash(ctx, Request{Image: img, Device: dev, Yes: true, Out: new(bytes.Buffer)})
		if !errors.Is(err, ErrTooSmall) {
			t.Fatalf("Flash to an 8 MiB disk = %v, want ErrTooSmall", err)
		}
	})
	t.Run("mounted", func(t *testing.T) {
		if _, err := exec.LookPath("mke2fs"); err != nil {
			t.Skip("skipping: mke2fs not installed (e2fsprogs)")
		}
		dev, _ := loop(t, 32<<20)
		if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", dev).CombinedOutput(); err != nil {
			t.Fatalf("mke2fs: %v\n%s", err, out)
		}
		mnt := t.TempDir()
		if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
			t.Skipf("skipping: cannot mount ext4 here: %v", err)
		}
		defer unix.Unmount(mnt, 0)
		d, err := Host().Lookup(dev)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.InUse) == 0 || !strings.Contains(d.InUse[0], mnt) {
			t.Errorf("Lookup(%s).InUse = %v, want it mounted on %s", dev, d.InUse, mnt)
		}
		_, err = Host().Flash(ctx, Request{Image: img, Device: dev, Yes: true, Out: new(bytes.Buffer)})
		if !errors.Is(err, ErrInUse) {
			t.Fatalf("Flash to a mounted disk = %v, want ErrInUse", err)
		}
		// The O_EXCL open refuses it too, should the mount table lie.
		if _, err := Open(dev); !errors.Is(err, ErrInUse) {
			t.Errorf("Open(mounted %s) = %v, want ErrInUse (EBUSY)", dev, err)
		}
	})
	t.Run("host disk", func(t *testing.T) {
		disks, err := Host().Disks()
		if err != nil {
			t.Fatal(err)
		}
		var host *Disk
		for i := range disks {
			if len(disks[i].HostRoot) > 0 {
				host = &disks[i]
			}
		}
		if host == nil {
			t.Skip("skipping: / is not on a block device here")
		}
		_, err = Host().Flash(ctx, Request{Image: img, Device: host.Path, Yes: true, Out: new(bytes.Buffer)})
		if !errors.Is(err, ErrHostDisk) {
			t.Fatalf("Flash to the host's own disk %s = %v, want ErrHostDisk", host.Path, err)
		}
	})
}
