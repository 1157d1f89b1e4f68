package disk

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"kiln.dev/kiln/partitions"
)

var update = flag.Bool("update", false, "rewrite golden files")

// gptBytes returns the protective MBR + primary GPT and the backup GPT of an image.
func gptBytes(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	primary := make([]byte, 34*partitions.SectorSize)
	if _, err := io.ReadFull(f, primary); err != nil {
		t.Fatal(err)
	}
	backup := make([]byte, 33*partitions.SectorSize)
	if _, err := f.ReadAt(backup, int64(partitions.ImageSize())-int64(len(backup))); err != nil {
		t.Fatal(err)
	}
	return append(primary, backup...)
}

func create(t *testing.T, id string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := Create(p, id)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	f.Close()
	return p
}

func TestGPTGolden(t *testing.T) {
	got := fmt.Sprintf("%x\n", sha256.Sum256(gptBytes(t, create(t, "kiln-dev"))))
	golden := filepath.Join("testdata", "gpt-kiln-dev.sha256")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update): %v", err)
	}
	if got != string(want) {
		t.Errorf("sha256 of the GPT of appliance kiln-dev = %s, want %s (layout change? run go test -update)", got, want)
	}
}

func TestGPTDiffersByAppliance(t *testing.T) {
	a, b := gptBytes(t, create(t, "one")), gptBytes(t, create(t, "two"))
	if string(a) == string(b) {
		t.Error("GPTs of appliances one and two are identical, want different GUIDs")
	}
}

func TestSgdiskAccepts(t *testing.T) {
	sgdisk, err := exec.LookPath("sgdisk")
	if err != nil {
		t.Skip("skipping: sgdisk not installed (apt-get install gdisk)")
	}
	p := create(t, "kiln-dev")
	out, err := exec.Command(sgdisk, "-v", p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Fatalf("sgdisk -v: %v\n%s", err, out)
	}
	for _, part := range partitions.Layout() {
		out, err := exec.Command(sgdisk, "-i", fmt.Sprint(part.Index), p).CombinedOutput()
		if err != nil {
			t.Fatalf("sgdisk -i %d: %v\n%s", part.Index, err, out)
		}
		for _, want := range []string{
			"Partition GUID code: " + part.Type,
			"Partition unique GUID: " + partitions.PartUUID("kiln-dev", part.Role),
			fmt.Sprintf("First sector: %d ", part.Start/partitions.SectorSize),
			"Partition name: '" + part.Label + "'",
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("sgdisk -i %d lacks %q:\n%s", part.Index, want, out)
			}
		}
	}
}
