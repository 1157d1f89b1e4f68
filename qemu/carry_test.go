package qemu

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// makeDisk writes a raw disk of size MiB with kiln's four partitions in
// miniature (1 MiB each from 1 MiB on; p4 ends at dataEnd MiB) and a marker
// at the start of every partition.
func makeDisk(t *testing.T, path string, sizeMiB, rootMiB, dataEndMiB int64, marker string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, sizeMiB<<20); err != nil {
		t.Fatal(err)
	}
	const mib = 2048 // sectors
	p3 := 2 + rootMiB
	p4 := p3 + rootMiB
	args := []string{
		"-n", "1:2048:4095", "-u", "1:11111111-0000-0000-0000-000000000001",
		"-n", "2:4096:" + itoa64((2+rootMiB)*mib-1), "-u", "2:11111111-0000-0000-0000-000000000002",
		"-n", "3:" + itoa64(p3*mib) + ":" + itoa64(p4*mib-1), "-u", "3:11111111-0000-0000-0000-000000000003",
		"-n", "4:" + itoa64(p4*mib) + ":" + itoa64(dataEndMiB*mib-1), "-u", "4:11111111-0000-0000-0000-000000000004",
		"-U", "22222222-0000-0000-0000-000000000000", path,
	}
	if out, err := exec.Command("sgdisk", args...).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk %v: %v\n%s", args, err, out)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i, off := range []int64{1, 2, p3, p4} {
		if _, err := f.WriteAt([]byte(marker+"-p"+itoa64(int64(i+1))), off<<20); err != nil {
			t.Fatal(err)
		}
	}
}

func itoa64(i int64) string { return strconv.FormatInt(i, 10) }

func TestCarryData(t *testing.T) {
	for _, tool := range []string{"qemu-img", "sgdisk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install qemu-utils gdisk)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }

	// The old VM disk: 16 MiB whose data partition grew to the end.
	makeDisk(t, p("old.raw"), 16, 1, 15, "OLD")
	if _, err := qemuImg(ctx, "convert", "-O", "qcow2", p("old.raw"), p("old.qcow2")); err != nil {
		t.Fatal(err)
	}
	// The new image: 8 MiB, same layout, new contents.
	makeDisk(t, p("new.raw"), 8, 1, 7, "NEW")
	if err := CreateOverlay(ctx, p("new.raw"), p("new.qcow2"), "16M"); err != nil {
		t.Fatal(err)
	}
	if err := CarryData(ctx, p("old.qcow2"), p("new.qcow2")); err != nil {
		t.Fatalf("CarryData() error = %v", err)
	}
	if err := ConvertRaw(ctx, p("new.qcow2"), p("result.raw")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sgdisk", "-v", p("result.raw")).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("No problems found")) {
		t.Errorf("sgdisk -v on the result: %v\n%s", err, out)
	}
	got, err := os.ReadFile(p("result.raw"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mib  int
		want string
	}{{1, "NEW-p1"}, {2, "NEW-p2"}, {3, "NEW-p3"}, {4, "OLD-p4"}} {
		if g := string(got[c.mib<<20 : c.mib<<20+6]); g != c.want {
			t.Errorf("partition at %d MiB starts with %q, want %q", c.mib, g, c.want)
		}
	}
	parts, err := ReadGPT(bytes.NewReader(got))
	if err != nil || len(parts) != 4 || parts[3].LastLBA != 15*2048-1 {
		t.Errorf("result GPT = %+v, %v, want the grown data partition ending at LBA %d", parts, err, 15*2048-1)
	}
	if info, err := Inspect(ctx, p("new.qcow2")); err != nil || info.BackingFile != p("new.raw") {
		t.Errorf("result is no longer an overlay of the new image: %+v, %v", info, err)
	}

	// A different root size is a different layout: nothing is carried.
	makeDisk(t, p("other.raw"), 8, 2, 7, "NEW")
	if err := CreateOverlay(ctx, p("other.raw"), p("other.qcow2"), "16M"); err != nil {
		t.Fatal(err)
	}
	if err := CarryData(ctx, p("old.qcow2"), p("other.qcow2")); !errors.Is(err, ErrIncompatible) {
		t.Errorf("CarryData(other layout) error = %v, want ErrIncompatible", err)
	}
}
