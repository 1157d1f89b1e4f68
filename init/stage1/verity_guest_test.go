package stage1

// Tier 3g: stage 1's verified-root setup against kiln's kernel in a guest.

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/init/blockdev"
	"kiln.dev/kiln/init/dm"
	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/ota/rootscan"
	"kiln.dev/kiln/qemu/guest"
)

// TestOpenVerityMountsSquashfs builds a squashfs as the image build does
// (mksquashfs, then verity.Append), opens it with openVerity on a loop
// device, mounts it and reads a file; the whole-root scan passes. With one
// byte flipped in the file's data, the read of that file fails with EIO and
// so does the whole-root scan, while the mount still works.
func TestOpenVerityMountsSquashfs(t *testing.T) {
	if !guest.Enter(t, guest.Options{Modules: []string{"dm-verity", "loop", "squashfs"}}) {
		return
	}
	for _, tool := range []string{"losetup", "mksquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install util-linux squashfs-tools)", tool)
		}
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "sbin"), 0o755)
	payload := make([]byte, 1<<20) // incompressible: the file's data fills the first 256 blocks
	r := rand.New(rand.NewPCG(3, 4))
	for i := range payload {
		payload[i] = byte(r.Uint32())
	}
	os.WriteFile(filepath.Join(tree, "sbin", "init"), payload, 0o755)
	img := filepath.Join(dir, "root.img")
	if out, err := exec.Command("mksquashfs", tree, img, "-noappend", "-all-root", "-comp", "zstd", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	p, err := verity.Append(img)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Out: testlog.Writer(t)}
	try := func(name string) (mounted string, readErr, scanErr error) {
		t.Helper()
		out, err := exec.Command("losetup", "--find", "--show", "--read-only", img).Output()
		if err != nil {
			t.Fatalf("losetup: %v", err)
		}
		loop := strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
		node, err := openVerity(o, blockdev.Default, loop, p, "0000")
		if err != nil {
			t.Fatalf("openVerity(%s): %v", loop, err)
		}
		t.Cleanup(func() {
			if c, err := dm.Open(dm.ControlPath); err == nil {
				c.Remove(verity.DeviceName)
				c.Close()
			}
		})
		mnt := filepath.Join(dir, name)
		os.MkdirAll(mnt, 0o755)
		if err := unix.Mount(node, mnt, "squashfs", unix.MS_RDONLY, ""); err != nil {
			t.Fatalf("mounting %s: %v", node, err)
		}
		t.Cleanup(func() { unix.Unmount(mnt, 0) })
		got, readErr := os.ReadFile(filepath.Join(mnt, "sbin", "init"))
		if readErr == nil && !bytes.Equal(got, payload) {
			t.Errorf("%s: /sbin/init reads back different bytes", name)
		}
		found, err := rootscan.FindDevice(blockdev.Default.Block, blockdev.Default.Dev, verity.DeviceName)
		if err != nil || found != node {
			t.Errorf("rootscan.FindDevice = %q, %v; want %s", found, err, node)
		}
		f, err := os.Open(node)
		if err != nil {
			t.Fatal(err)
		}
		scanErr = rootscan.Start(t.Context(), f, int64(p.Sectors()*512), node).Wait()
		f.Close()
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Fatal(err)
		}
		c, err := dm.Open(dm.ControlPath)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Remove(verity.DeviceName); err != nil {
			t.Fatal(err)
		}
		return node, readErr, scanErr
	}
	if _, readErr, scanErr := try("good"); readErr != nil || scanErr != nil {
		t.Fatalf("good root: read %v, scan %v", readErr, scanErr)
	}

	// Flip a byte in the first data block after the superblock: /sbin/init's data.
	b, _ := os.ReadFile(img)
	b[verity.BlockSize+100] ^= 0xff
	os.WriteFile(img, b, 0o644)
	_, readErr, scanErr := try("bad")
	if readErr == nil || !strings.Contains(readErr.Error(), "input/output error") {
		t.Errorf("reading /sbin/init of the tampered root = %v, want EIO", readErr)
	}
	if !errors.Is(scanErr, rootscan.ErrCorrupt) {
		t.Errorf("scanning the tampered root = %v, want rootscan.ErrCorrupt", scanErr)
	}
}
