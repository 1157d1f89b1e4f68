package stage1

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiln.dev/kiln/init/blockdev"
	"kiln.dev/kiln/partitions"
)

// TestLiveSetIDMatchesPartitions keeps stage 1's copy of the ISO's volume set
// ID rule equal to the one the image build writes.
func TestLiveSetIDMatchesPartitions(t *testing.T) {
	id := partitions.LiveID("kiln-test", "v1", 3)
	if got, want := liveSetID(id), partitions.LiveVolumeSetID(id); got != want {
		t.Errorf("liveSetID(%s) = %s, want %s (partitions.LiveVolumeSetID)", id, got, want)
	}
}

// TestFindLive finds the live ISO among fake disks (sysfs and device nodes in a
// temp dir): a blank disk and another kiln ISO are skipped with the reason.
func TestFindLive(t *testing.T) {
	dir := t.TempDir()
	sys := blockdev.Sys{Block: filepath.Join(dir, "class/block"), Dev: filepath.Join(dir, "dev")}
	for _, d := range []string{"sda", "sr0", "sr1", "loop0"} {
		if err := os.MkdirAll(filepath.Join(sys.Block, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(sys.Dev, 0o755)
	const id = "8D3F1C2A-5B6E-4F70-8A9B-0C1D2E3F4A5B"
	os.WriteFile(filepath.Join(sys.Dev, "sda"), make([]byte, 1<<20), 0o644)
	os.WriteFile(filepath.Join(sys.Dev, "sr0"), fakeISO(t, "KILN_LIVE_00000000000000000000000000000000", 40), 0o644)
	os.WriteFile(filepath.Join(sys.Dev, "sr1"), fakeISO(t, liveSetID(id), 41), 0o644)
	os.WriteFile(filepath.Join(sys.Dev, "loop0"), fakeISO(t, liveSetID(id), 42), 0o644)
	m, err := FindLive(sys, id)
	if err != nil {
		t.Fatalf("FindLive: %v", err)
	}
	if want := (LiveMedium{Device: filepath.Join(sys.Dev, "sr1"), Offset: 41 * 2048, Size: 4096}); m != want {
		t.Errorf("FindLive = %+v, want %+v", m, want)
	}
	_, err = FindLive(sys, "11111111-2222-3333-4444-555555555555")
	if err == nil || !strings.Contains(err.Error(), "sr1: ISO \"KILN\" is another medium") || !strings.Contains(err.Error(), "sda: no ISO 9660") {
		t.Errorf("FindLive(other ID) = %v, want every disk's reason", err)
	}
}

// fakeISO is a minimal ISO 9660 image: a PVD, a root directory with
// LIVE/ROOT.SFS (a squashfs magic) at block rootBlock.
func fakeISO(t *testing.T, setID string, rootBlock uint32) []byte {
	t.Helper()
	img := make([]byte, 64*2048)
	pvd := img[16*2048:]
	pvd[0] = 1
	copy(pvd[1:], "CD001")
	copy(pvd[40:], "KILN")
	copy(pvd[190:], setID)
	pvd[128], pvd[129] = 0x00, 0x08 // 2048, little endian
	record := func(b []byte, name string, block, size uint32, dir bool) int {
		n := 33 + len(name)
		n += n % 2
		b[0] = byte(n)
		putLE32(b[2:], block)
		putLE32(b[10:], size)
		if dir {
			b[25] = 2
		}
		b[32] = byte(len(name))
		copy(b[33:], name)
		return n
	}
	record(pvd[156:], "\x00", 20, 2048, true)
	term := img[17*2048:]
	term[0] = 255
	copy(term[1:], "CD001")
	root := img[20*2048:]
	off := record(root, "\x00", 20, 2048, true)
	off += record(root[off:], "\x01", 20, 2048, true)
	record(root[off:], "LIVE", 21, 2048, true)
	live := img[21*2048:]
	off = record(live, "\x00", 21, 2048, true)
	off += record(live[off:], "\x01", 20, 2048, true)
	record(live[off:], "ROOT.SFS;1", rootBlock, 4096, false)
	copy(img[rootBlock*2048:], "hsqs")
	return img
}

func putLE32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}
