package boottest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"kiln.dev/kiln/qemu"
)

// TestImageStatic checks the built image with the real tools, without booting
// it: the GPT (sgdisk -v), the ESP (fsck.vfat -n) and both root squashfs
// images (unsquashfs), which must list the same files.
func TestImageStatic(t *testing.T) {
	img := Image(t)
	for _, tool := range []string{"sgdisk", "fsck.vfat", "unsquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install gdisk dosfstools squashfs-tools)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	if err := qemu.ConvertRaw(ctx, img, raw); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) []byte {
		t.Helper()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			t.Errorf("%s %v: %v\n%s", name, args, err, out)
		}
		return out
	}
	if out := run("sgdisk", "-v", raw); !bytes.Contains(out, []byte("No problems found")) {
		t.Errorf("sgdisk -v: %s", out)
	}
	esp := filepath.Join(dir, "esp.vfat")
	if _, err := qemu.ExtractPartition(raw, 1, esp); err != nil {
		t.Fatal(err)
	}
	run("fsck.vfat", "-n", esp)

	var listings [2][]byte
	for i, idx := range []int{2, 3} {
		root := filepath.Join(dir, "root.squashfs")
		if _, err := qemu.ExtractPartition(raw, idx, root); err != nil {
			t.Fatal(err)
		}
		listings[i] = run("unsquashfs", "-d", "", "-lls", root)
		os.Remove(root)
		for _, want := range []string{"/sbin/kiln", "/sbin/init", "/etc/kiln/kiln.yaml"} {
			if !bytes.Contains(listings[i], []byte(want)) {
				t.Errorf("root on partition %d has no %s", idx, want)
			}
		}
	}
	if !bytes.Equal(listings[0], listings[1]) {
		t.Errorf("root-a and root-b list different files")
	}
}
