package gpt

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	mib      = 1 << 20
	espUUID  = "0B1C2D3E-1111-4222-8333-444455556666"
	rootA    = "A1A1A1A1-2222-4333-8444-555566667777"
	dataUUID = "DADADADA-3333-4444-8555-666677778888"
)

// makeDisk builds a GPT disk image of size bytes with sgdisk, laid out like
// kiln's (small sizes), and returns its path.
func makeDisk(t *testing.T, size int64) string {
	t.Helper()
	sgdisk, err := exec.LookPath("sgdisk")
	if err != nil {
		t.Skip("sgdisk not installed (apt-get install gdisk): needed to build test disks")
	}
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := []string{
		"-n", "1:2048:+8M", "-t", "1:C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "-c", "1:kiln-esp", "-u", "1:" + espUUID,
		"-n", "2:0:+8M", "-t", "2:4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "-c", "2:kiln-root-a", "-u", "2:" + rootA,
		"-n", "3:0:+8M", "-t", "3:4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "-c", "3:kiln-root-b",
		"-n", "4:0:+4M", "-t", "4:0FC63DAF-8483-4772-8E79-3D69D8477DE4", "-c", "4:kiln-data", "-u", "4:" + dataUUID,
		p,
	}
	if out, err := exec.Command(sgdisk, args...).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk %v: %v\n%s", args, err, out)
	}
	return p
}

func readDisk(t *testing.T, p string) *Table {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	tab, err := Read(f, fi.Size(), 512)
	if err != nil {
		t.Fatalf("Read(%s): %v", p, err)
	}
	return tab
}

func TestRead(t *testing.T) {
	p := makeDisk(t, 64*mib)
	tab := readDisk(t, p)
	type short struct {
		Index       int
		Name, UUID  string
		First, Last uint64
	}
	var got []short
	for _, e := range tab.Entries {
		s := short{e.Index, e.Name, "", e.FirstLBA, e.LastLBA}
		if e.Index != 3 {
			s.UUID = e.UUID
		}
		got = append(got, s)
	}
	want := []short{
		{1, "kiln-esp", espUUID, 2048, 2048 + 8*2048 - 1},
		{2, "kiln-root-a", rootA, 18432, 18432 + 8*2048 - 1},
		{3, "kiln-root-b", "", 34816, 34816 + 8*2048 - 1},
		{4, "kiln-data", dataUUID, 51200, 51200 + 4*2048 - 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Read entries mismatch (-want +got):\n%s", diff)
	}
	if e, ok := tab.ByUUID(strings.ToLower(rootA)); !ok || e.Index != 2 {
		t.Errorf("ByUUID(%s) = %+v, %v; want partition 2", rootA, e, ok)
	}
	if _, ok := tab.ByUUID("00000000-0000-0000-0000-000000000000"); ok {
		t.Error("ByUUID(zero) found a partition")
	}
	if e, ok := tab.ByName("kiln-data"); !ok || e.Type != "0FC63DAF-8483-4772-8E79-3D69D8477DE4" {
		t.Errorf("ByName(kiln-data) = %+v, %v", e, ok)
	}
	if tab.AlternateLBA != 64*2048-1 {
		t.Errorf("AlternateLBA = %d, want %d", tab.AlternateLBA, 64*2048-1)
	}
}

func TestReadFallsBackToBackup(t *testing.T) {
	p := makeDisk(t, 64*mib)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 512), 512); err != nil { // destroy the primary header
		t.Fatal(err)
	}
	f.Close()
	tab := readDisk(t, p)
	if !tab.FromBackup {
		t.Error("FromBackup = false, want true")
	}
	if e, ok := tab.ByUUID(dataUUID); !ok || e.Index != 4 {
		t.Errorf("ByUUID(data) from backup = %+v, %v", e, ok)
	}
}

func TestReadRejectsNonGPT(t *testing.T) {
	p := filepath.Join(t.TempDir(), "blank")
	if err := os.WriteFile(p, make([]byte, 1*mib), 0o644); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(p)
	defer f.Close()
	if _, err := Read(f, 1*mib, 512); err == nil {
		t.Error("Read(blank) = nil error, want ErrNoGPT")
	}
}

func TestGrow(t *testing.T) {
	p := makeDisk(t, 64*mib)
	// The image was flashed to a bigger disk: 200 MiB plus an odd 3 sectors.
	if err := os.Truncate(p, 200*mib+3*512); err != nil {
		t.Fatal(err)
	}
	tab := readDisk(t, p)
	g, ok, err := tab.PlanGrow(4, 200*mib+3*512, mib)
	if err != nil || !ok {
		t.Fatalf("PlanGrow = %+v, %v, %v; want a growth", g, ok, err)
	}
	sectors := uint64(200*2048 + 3)
	want := Growth{Index: 4, OldLastLBA: 51200 + 4*2048 - 1, NewLastLBA: 199*2048 - 1, AlternateLBA: sectors - 1, LastUsableLBA: sectors - 34}
	if diff := cmp.Diff(want, g); diff != "" {
		t.Errorf("PlanGrow mismatch (-want +got):\n%s", diff)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Apply(f, g); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	f.Close()
	out, err := exec.Command("sgdisk", "-v", p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v after grow: %v\n%s", err, out)
	}
	info, _ := exec.Command("sgdisk", "-i", "4", p).CombinedOutput()
	if !strings.Contains(string(info), "Last sector: 407551") || !strings.Contains(string(info), dataUUID) {
		t.Errorf("sgdisk -i 4 after grow:\n%s", info)
	}
	again := readDisk(t, p)
	if e, _ := again.ByIndex(4); e.LastLBA != g.NewLastLBA {
		t.Errorf("re-read partition 4 ends at %d, want %d", e.LastLBA, g.NewLastLBA)
	}
	// Growing twice changes nothing.
	if g2, ok, err := again.PlanGrow(4, 200*mib+3*512, mib); err != nil || ok {
		t.Errorf("PlanGrow after grow = %+v, %v, %v; want nothing to do", g2, ok, err)
	}
}

func TestPlanGrowRefusals(t *testing.T) {
	p := makeDisk(t, 64*mib)
	tab := readDisk(t, p)
	if _, _, err := tab.PlanGrow(2, 64*mib, mib); err == nil {
		t.Error("PlanGrow(2) = nil error, want 'partition 3 comes after it'")
	}
	if _, _, err := tab.PlanGrow(9, 64*mib, mib); err == nil {
		t.Error("PlanGrow(9) = nil error, want 'no such partition'")
	}
	if _, _, err := tab.PlanGrow(4, 28*mib, mib); err == nil {
		t.Error("PlanGrow(4) on a shrunken disk = nil error, want one")
	}
	// The freshly made disk: the partition could grow within the disk.
	if g, ok, err := tab.PlanGrow(4, 64*mib, mib); err != nil || !ok || g.NewLastLBA != 63*2048-1 {
		t.Errorf("PlanGrow(4, same disk) = %+v, %v, %v; want growth to LBA %d", g, ok, err, 63*2048-1)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(make([]byte, 4096))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := strings.NewReader(string(b))
		Read(r, int64(len(b)), 512) // must not panic
	})
}
