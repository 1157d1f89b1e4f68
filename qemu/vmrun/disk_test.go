package vmrun

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/qemu"
)

func vmNeedQemuImg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed (apt-get install qemu-utils)")
	}
}

func TestPrepareDisk(t *testing.T) {
	vmNeedQemuImg(t)
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.img")
	if err := os.WriteFile(base, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	o := Options{Image: base, State: filepath.Join(dir, "vm"), DiskSize: "4M"}
	os.MkdirAll(o.State, 0o755)
	var msgs bytes.Buffer

	disk, cleanup, err := prepareDisk(ctx, o, &msgs)
	if err != nil {
		t.Fatalf("prepareDisk() error = %v", err)
	}
	cleanup()
	info, err := qemu.Inspect(ctx, disk)
	if err != nil || info.Format != "qcow2" || info.VirtualSize != 4<<20 || info.BackingFile != base {
		t.Fatalf("overlay = %+v, %v, want a 4 MiB qcow2 backed by %s", info, err, base)
	}
	fi1, _ := os.Stat(disk)
	if _, _, err := prepareDisk(ctx, o, &msgs); err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(disk)
	if !os.SameFile(fi1, fi2) {
		t.Errorf("prepareDisk() replaced the overlay although the image did not change")
	}

	// A rebuild with the same bytes keeps the overlay.
	future := time.Now().Add(time.Hour)
	os.Chtimes(base, future, future)
	if _, _, err := prepareDisk(ctx, o, &msgs); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(disk); !os.SameFile(fi1, fi) {
		t.Errorf("prepareDisk() replaced the overlay after a rebuild with identical bytes")
	}

	// The image changes (and has no GPT to carry data over): the old overlay
	// is kept aside and a new one of the same size is made.
	if err := os.WriteFile(base, bytes.Repeat([]byte{1}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := prepareDisk(ctx, o, &msgs); err != nil {
		t.Fatal(err)
	}
	fi3, _ := os.Stat(disk)
	if os.SameFile(fi2, fi3) {
		t.Errorf("prepareDisk() reused the overlay of a changed image")
	}
	if _, err := os.Stat(disk + ".old"); err != nil || !strings.Contains(msgs.String(), "layout differs") {
		t.Errorf("old overlay not kept (%v) or not reported (%q)", err, msgs.String())
	}
	if info, err := qemu.Inspect(ctx, disk); err != nil || info.VirtualSize != 4<<20 {
		t.Errorf("new overlay = %+v, %v, want the old one's size", info, err)
	}

	o.Snapshot = true
	snap, cleanup, err := prepareDisk(ctx, o, &msgs)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(snap) == o.State {
		t.Errorf("--snapshot overlay %s is in the state dir", snap)
	}
	cleanup()
	if _, err := os.Stat(snap); !os.IsNotExist(err) {
		t.Errorf("--snapshot overlay %s survives cleanup: %v", snap, err)
	}

	o.Image = filepath.Join(dir, "missing.qcow2")
	if _, _, err := prepareDisk(ctx, o, &msgs); err == nil || !strings.Contains(err.Error(), "make image") {
		t.Errorf("prepareDisk(missing image) error = %v, want a hint to run make image", err)
	}
}

// TestVMRun boots a blank disk without NICs: OVMF finds nothing to boot and
// starts its shell, which is enough to check the console relay, the escapes and the
// bounded shutdown of a guest that ignores the power button.
