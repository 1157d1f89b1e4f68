package qemu

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReadGPTAndExtract(t *testing.T) {
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Skip("sgdisk not installed (apt-get install gdisk)")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sgdisk",
		"-n", "1:2048:4095", "-t", "1:C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "-c", "1:kiln-esp",
		"-u", "1:11111111-2222-3333-4444-555555555555",
		"-n", "3:4096:8191", "-t", "3:0FC63DAF-8483-4772-8E79-3D69D8477DE4", "-c", "3:kiln-data",
		"-u", "3:AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE", img).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v: %s", err, out)
	}
	// Put a marker in partition 3 and leave the rest zero.
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("kiln-marker"), 4096*512+1000); err != nil {
		t.Fatal(err)
	}
	parts, err := ReadGPT(f)
	f.Close()
	if err != nil {
		t.Fatalf("ReadGPT() error = %v", err)
	}
	want := []GPTPartition{
		{Index: 1, Type: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", UUID: "11111111-2222-3333-4444-555555555555", FirstLBA: 2048, LastLBA: 4095, Name: "kiln-esp"},
		{Index: 3, Type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", UUID: "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE", FirstLBA: 4096, LastLBA: 8191, Name: "kiln-data"},
	}
	if diff := cmp.Diff(want, parts); diff != "" {
		t.Fatalf("ReadGPT() mismatch (-want +got):\n%s", diff)
	}

	dst := filepath.Join(dir, "p3")
	p, err := ExtractPartition(img, 3, dst)
	if err != nil || p.Index != 3 {
		t.Fatalf("ExtractPartition(3) = %+v, %v", p, err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	wantData := make([]byte, 4096*512)
	copy(wantData[1000:], "kiln-marker")
	if !bytes.Equal(got, wantData) {
		t.Errorf("ExtractPartition(3) wrote %d bytes that differ from the partition", len(got))
	}
	if _, err := ExtractPartition(img, 2, dst); err == nil {
		t.Errorf("ExtractPartition(2) on a disk without partition 2: no error")
	}
}

func TestReadGPTRejectsNonGPT(t *testing.T) {
	if _, err := ReadGPT(bytes.NewReader(make([]byte, 4096))); err == nil {
		t.Error("ReadGPT(zeros) error = nil, want one")
	}
}
