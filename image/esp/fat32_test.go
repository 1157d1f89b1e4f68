package esp

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func sampleFiles() []File {
	big := bytes.Repeat([]byte("kernel"), 300000)
	return []File{
		{Path: "EFI/BOOT/BOOTX64.EFI", Data: []byte("MZ efi")},
		{Path: "loader/loader.conf", Data: []byte("timeout 0\neditor no\nauto-entries no\n")},
		{Path: "loader/entries/kiln-1.conf", Data: []byte("title kiln\n")},
		{Path: "loader/entries/kiln-2+3-0.conf", Data: []byte("title kiln 2\n")},
		{Path: "kiln/a/vmlinuz", Data: big},
		{Path: "kiln/a/initrd", Data: []byte("initrd")},
		{Path: "kiln/b/vmlinuz", Data: big},
		{Path: "kiln/b/initrd", Data: nil},
		{Path: "a-rather-long-file-name-that-needs-several-lfn-slots.txt", Data: []byte("x")},
		{Path: "LONGFI~1.TXT", Data: []byte("y")},
	}
}

func writeImage(t *testing.T, size int64, files []File) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "esp.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	o := Options{Size: size, VolumeID: 0x1234abcd, Label: "KILN-ESP", HiddenSecs: 2048}
	if err := Write(f, 0, o, files); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return p
}

func TestFsckAccepts(t *testing.T) {
	fsck, err := exec.LookPath("fsck.vfat")
	if err != nil {
		t.Skip("fsck.vfat not installed (apt-get install dosfstools)")
	}
	for _, size := range []int64{64 << 20, 129 << 20, 160 << 20, 259 << 20, 300 << 20} {
		t.Run(fmt.Sprintf("%dMiB", size>>20), func(t *testing.T) {
			p := writeImage(t, size, sampleFiles())
			out, err := exec.Command(fsck, "-n", "-v", "-l", p).CombinedOutput()
			if err != nil {
				t.Fatalf("fsck.vfat -n rejected the filesystem: %v\n%s", err, out)
			}
			for _, want := range []string{"/EFI/BOOT/BOOTX64.EFI", "/loader/entries/kiln-2+3-0.conf", "/kiln/b/vmlinuz",
				"/a-rather-long-file-name-that-needs-several-lfn-slots.txt", "/LONGFI~1.TXT"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("fsck.vfat -l output lacks %s:\n%s", want, out)
				}
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	sum := func(files []File) [32]byte {
		data, err := os.ReadFile(writeImage(t, 64<<20, files))
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(data)
	}
	a := sampleFiles()
	b := sampleFiles()
	b[0], b[5] = b[5], b[0]
	if x, y := sum(a), sum(b); x != y {
		t.Errorf("two writes of the same files = %x and %x, want identical", x, y)
	}
}

func TestShortNames(t *testing.T) {
	d := &node{dir: true, children: []*node{
		{name: "BOOTX64.EFI"}, {name: "loader.conf"}, {name: "loader"}, {name: "kiln-1.conf"}, {name: "kiln-1+3-0.conf"},
	}}
	if err := assignShortNames(d); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"BOOTX64.EFI":     "BOOTX64 EFI",
		"loader.conf":     "LOADER~1CON",
		"loader":          "LOADER     ",
		"kiln-1.conf":     "KILN-1~1CON",
		"kiln-1+3-0.conf": "KILN-1~2CON",
	}
	for _, c := range d.children {
		if got := string(c.short[:]); got != want[c.name] {
			t.Errorf("short name of %q = %q, want %q", c.name, got, want[c.name])
		}
	}
}

func TestRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int64
		files []File
	}{
		{"case collision", 64 << 20, []File{{Path: "a/x"}, {Path: "A/X"}}},
		{"file under file", 64 << 20, []File{{Path: "a"}, {Path: "a/b"}}},
		{"too small for FAT32", 16 << 20, nil},
		{"does not fit", 64 << 20, []File{{Path: "big", Data: make([]byte, 65<<20)}}},
		{"bad char", 64 << 20, []File{{Path: "a:b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "x"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := Write(f, 0, Options{Size: tc.size}, tc.files); err == nil {
				t.Errorf("Write(%s) = nil, want error", tc.name)
			}
		})
	}
}
