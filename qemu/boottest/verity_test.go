package boottest

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/image/verity"
)

// verityCorruptRE is dm-verity reporting a block that does not match the tree.
var verityCorruptRE = regexp.MustCompile(`device-mapper: verity: [0-9:]+: data block [0-9]+ is corrupted`)

// TestTamperedRootFallsBack gives slot b a newer entry with one try
// (kiln-2+1-0.conf), flips one byte in the middle of root-b's squashfs data
// and boots: dm-verity must refuse the block, the try must fail (PID 1
// dies, or the trial's whole-root read fails the health checks), and the
// next boot must fall back to slot a and reach kiln: ready.
func TestTamperedRootFallsBack(t *testing.T) {
	img := Image(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*BootTimeout())
	defer cancel()
	raw, parts, entryB := withSlotBEntry(t, ctx, img, "kiln-2+1-0.conf")
	vp := entryVerity(t, entryB)
	off := parts[3].Offset() + vp.DataBlocks*verity.BlockSize/2
	f, err := os.OpenFile(raw, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("flipped the byte at %d of root-b (%d data blocks)", off-parts[3].Offset(), vp.DataBlocks)

	vm := NewVM(t, ctx, img, VMOptions{Disk: NewOverlay(t, raw, "")})
	vm.FailOn() // a panic of PID 1 on the tampered root is one way the try fails
	start := time.Now()
	expectSlot := func(slot string) {
		t.Helper()
		l, err := vm.Expect(ctx, Stage1RE, BootTimeout())
		if err != nil {
			t.Fatal(err)
		}
		if m := Stage1RE.FindStringSubmatch(l); m[1] != slot {
			t.Fatalf("stage 1 says %q, want slot %s", l, slot)
		}
	}
	expectSlot("b")
	l, err := vm.Expect(ctx, verityCorruptRE, BootTimeout())
	if err != nil {
		t.Fatalf("no dm-verity corruption report on the tampered slot: %v", err)
	}
	t.Logf("slot b refused: %s", l)
	expectSlot("a")
	if _, err := vm.Expect(ctx, ReadyRE, BootTimeout()); err != nil {
		t.Fatal(err)
	}
	t.Logf("fell back to slot a and reached kiln: ready %s after power-on", time.Since(start).Round(time.Second))
	for _, line := range vm.Lines() {
		if strings.Contains(line.Text, "kiln-ota:") || strings.Contains(line.Text, "Kernel panic") || strings.Contains(line.Text, "kiln-stage1: FAILED") {
			t.Logf("console: %s", line.Text)
		}
	}
}

// entryVerity returns the kiln.verity parameters on an entry's options line.
func entryVerity(t *testing.T, entry string) verity.Params {
	t.Helper()
	for _, f := range strings.Fields(entry) {
		if v, ok := strings.CutPrefix(f, verity.CmdlineParam+"="); ok {
			p, err := verity.ParseParams(v)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	t.Fatalf("the image's boot entry has no %s=:\n%s", verity.CmdlineParam, entry)
	return verity.Params{}
}
