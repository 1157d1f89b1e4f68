package datapart

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestDetect(t *testing.T) {
	img := func(size int, patch func(b []byte)) []byte {
		b := make([]byte, size)
		if patch != nil {
			patch(b)
		}
		return b
	}
	tests := []struct {
		name string
		data []byte
		want Signature
	}{
		{"blank", img(4<<20, nil), Signature{Kind: Blank}},
		{"tiny blank", img(4096, nil), Signature{Kind: Blank}},
		{"xfs", img(2<<20, func(b []byte) { copy(b, "XFSB") }), Signature{Kind: Foreign, Name: "xfs"}},
		{"btrfs", img(2<<20, func(b []byte) { copy(b[0x10040:], "_BHRfS_M") }), Signature{Kind: Foreign, Name: "btrfs"}},
		{"luks", img(2<<20, func(b []byte) { copy(b, "LUKS\xba\xbe") }), Signature{Kind: Foreign, Name: "LUKS encrypted volume"}},
		{"lvm", img(2<<20, func(b []byte) { copy(b[512:], "LABELONE") }), Signature{Kind: Foreign, Name: "LVM physical volume"}},
		{"swap", img(2<<20, func(b []byte) { copy(b[4086:], "SWAPSPACE2") }), Signature{Kind: Foreign, Name: "swap"}},
		{"ntfs", img(2<<20, func(b []byte) { copy(b[3:], "NTFS    "); b[510], b[511] = 0x55, 0xaa }), Signature{Kind: Foreign, Name: "ntfs"}},
		{"mbr", img(2<<20, func(b []byte) { b[510], b[511] = 0x55, 0xaa }), Signature{Kind: Foreign, Name: "boot sector or MBR"}},
		{"garbage past 64 KiB", img(2<<20, func(b []byte) { b[900000] = 1 }), Signature{Kind: Foreign, Name: "unknown data"}},
		{"garbage past probe is still blank", img(2<<20, func(b []byte) { b[1<<20+5] = 1 }), Signature{Kind: Blank}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Detect(bytes.NewReader(tt.data), int64(len(tt.data)))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Detect(%s) = %+v, want %+v", tt.name, got, tt.want)
			}
		})
	}
}

// TestDetectRealFilesystems checks the signatures of file systems made by the real tools.
func TestDetectRealFilesystems(t *testing.T) {
	tests := []struct {
		tool string
		args []string
		want Signature
	}{
		{"mke2fs", []string{"-q", "-F", "-t", "ext4", "-L", "kiln-data"}, Signature{Kind: Ext, Name: "ext4", Label: "kiln-data", Bytes: 16 << 20}},
		{"mke2fs", []string{"-q", "-F", "-t", "ext2"}, Signature{Kind: Ext, Name: "ext2", Bytes: 16 << 20}},
		{"mkfs.vfat", nil, Signature{Kind: Foreign, Name: "vfat"}},
		{"mksquashfs", nil, Signature{Kind: Foreign, Name: "squashfs"}},
	}
	for _, tt := range tests {
		t.Run(tt.tool+" "+tt.want.Name, func(t *testing.T) {
			if _, err := exec.LookPath(tt.tool); err != nil {
				t.Skipf("%s not installed", tt.tool)
			}
			dir := t.TempDir()
			p := filepath.Join(dir, "fs.img")
			var cmd *exec.Cmd
			if tt.tool == "mksquashfs" {
				os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
				cmd = exec.Command("mksquashfs", filepath.Join(dir, "f"), p, "-quiet", "-noappend")
			} else {
				if err := os.WriteFile(p, make([]byte, 16<<20), 0o644); err != nil {
					t.Fatal(err)
				}
				cmd = exec.Command(tt.tool, append(tt.args, p)...)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, _ := f.Stat()
			got, err := Detect(f, fi.Size())
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Detect(%s) = %+v, want %+v", tt.tool, got, tt.want)
			}
		})
	}
}

func FuzzDetect(f *testing.F) {
	f.Add(make([]byte, 2048))
	f.Fuzz(func(t *testing.T, b []byte) { Detect(bytes.NewReader(b), int64(len(b))) })
}
