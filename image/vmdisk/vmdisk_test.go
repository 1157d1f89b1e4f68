package vmdisk

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// rawImage writes a 48 MiB raw disk with data in the first grains, a run that
// straddles grain, table (32 MiB) and block boundaries, a lone byte and the last
// sector, zeros elsewhere.
func rawImage(t *testing.T) (string, []byte) {
	t.Helper()
	b := make([]byte, 48*mib)
	r := rand.New(rand.NewPCG(1, 2))
	fill := func(off, n int) {
		for i := range n {
			b[off+i] = byte(r.Uint32())
		}
	}
	fill(0, 3*mib)
	fill(32*mib-100_000, 200_000)
	b[40*mib+12345] = 0x5a
	fill(48*mib-sector, sector)
	p := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func qemuImg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("skipping: qemu-img not installed (apt-get install qemu-utils)")
	}
}

// convertBack reads a virtual disk with qemu-img: check passes, info reports the
// format and size, and convert -O raw gives back the bytes.
func convertBack(t *testing.T, path, format string, vsize int64) []byte {
	t.Helper()
	if out, err := exec.Command("qemu-img", "check", "-f", format, path).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check -f %s: %v\n%s", format, err, out)
	}
	out, err := exec.Command("qemu-img", "info", "--output=json", "-f", format, path).Output()
	if err != nil {
		t.Fatalf("qemu-img info: %v", err)
	}
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	if info.Format != format || info.VirtualSize != vsize {
		t.Errorf("qemu-img info = %s %d bytes, want %s %d", info.Format, info.VirtualSize, format, vsize)
	}
	raw := filepath.Join(t.TempDir(), "back.raw")
	if out, err := exec.Command("qemu-img", "convert", "-f", format, "-O", "raw", path, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type writer func(dst *os.File, src *os.File, size int64, o Options) (int64, error)

var formats = []struct {
	name, qemuFormat string
	write            writer
}{
	{"monolithicSparse", "vmdk", func(d, s *os.File, n int64, o Options) (int64, error) {
		return WriteVMDK(d, s, n, "kiln.vmdk", o)
	}},
	{"streamOptimized", "vmdk", func(d, s *os.File, n int64, o Options) (int64, error) {
		return WriteStreamVMDK(d, s, n, "kiln-disk1.vmdk", o)
	}},
	{"vhdx", "vhdx", func(d, s *os.File, n int64, o Options) (int64, error) { return WriteVHDX(d, s, n, o) }},
}

func write(t *testing.T, w writer, rawPath string, o Options) (string, int64) {
	t.Helper()
	src, err := os.Open(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	st, _ := src.Stat()
	p := filepath.Join(t.TempDir(), "disk.out")
	dst, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	n, err := w(dst, src, st.Size(), o)
	if err != nil {
		t.Fatal(err)
	}
	if fst, _ := dst.Stat(); fst.Size() != n {
		t.Errorf("writer returned %d bytes, file has %d", n, fst.Size())
	}
	return p, n
}

func sum(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// TestFormatsReadBack converts with each writer and has qemu-img check it and read
// it back to the original bytes, at the raw size and at a larger virtual size.
func TestFormatsReadBack(t *testing.T) {
	qemuImg(t)
	rawPath, raw := rawImage(t)
	for _, f := range formats {
		for _, vsize := range []int64{0, 100 * mib} {
			t.Run(fmt.Sprintf("%s/%d", f.name, vsize), func(t *testing.T) {
				p, n := write(t, f.write, rawPath, Options{ID: "test", VirtualSize: vsize})
				want := raw
				if vsize != 0 {
					want = append(append([]byte(nil), raw...), make([]byte, vsize-int64(len(raw)))...)
				}
				got := convertBack(t, p, f.qemuFormat, int64(len(want)))
				if !bytes.Equal(got, want) {
					t.Errorf("qemu-img read back %d bytes differing from the %d raw bytes", len(got), len(want))
				}
				if n >= int64(len(raw)) {
					t.Errorf("%s is %d bytes for %d raw bytes mostly zero: want it sparse", f.name, n, len(raw))
				}
			})
		}
	}
}

// TestFormatsDeterministic: the same image and ID give the same bytes; another ID
// gives other identifiers.
func TestFormatsDeterministic(t *testing.T) {
	rawPath, _ := rawImage(t)
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			a, _ := write(t, f.write, rawPath, Options{ID: "one"})
			b, _ := write(t, f.write, rawPath, Options{ID: "one"})
			c, _ := write(t, f.write, rawPath, Options{ID: "two"})
			if sum(t, a) != sum(t, b) {
				t.Error("two conversions with the same ID differ")
			}
			if sum(t, a) == sum(t, c) {
				t.Error("conversions with different IDs are identical: identifiers do not follow the ID")
			}
		})
	}
}

func TestVirtualSizeErrors(t *testing.T) {
	rawPath, _ := rawImage(t)
	src, _ := os.Open(rawPath)
	defer src.Close()
	for _, vsize := range []int64{47 * mib, 48*mib + 512} {
		dst, err := os.Create(filepath.Join(t.TempDir(), "x.vhdx"))
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Close()
		_, err = WriteVHDX(dst, src, 48*mib, Options{VirtualSize: vsize})
		if !errors.Is(err, ErrSize) {
			t.Errorf("WriteVHDX(virtual size %d) = %v, want ErrSize", vsize, err)
		}
	}
}

// TestVHDXStructures checks the checksums and the BAT entries of a written VHDX.
func TestVHDXStructures(t *testing.T) {
	rawPath, _ := rawImage(t)
	p, _ := write(t, formats[2].write, rawPath, Options{ID: "x"})
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, s []byte) {
		c := append([]byte(nil), s...)
		want := uint32(c[4]) | uint32(c[5])<<8 | uint32(c[6])<<16 | uint32(c[7])<<24
		c[4], c[5], c[6], c[7] = 0, 0, 0, 0
		if got := crc32c(c); got != want {
			t.Errorf("%s checksum %08x, want %08x", name, want, got)
		}
	}
	check("header 1", b[64*1024:64*1024+4096])
	check("header 2", b[128*1024:128*1024+4096])
	check("region table 1", b[192*1024:256*1024])
	check("region table 2", b[256*1024:320*1024])
	// Blocks 0-2 (3 MiB of data), 31 and 32 (the run across 32 MiB), 40, 47 are present.
	var present []int
	for i := range 48 {
		e := b[vhdxBATOffset+8*i : vhdxBATOffset+8*i+8]
		if e[0]&7 == batPayloadFullyPresent {
			present = append(present, i)
		}
	}
	if got, want := fmt.Sprint(present), "[0 1 2 31 32 40 47]"; got != want {
		t.Errorf("present blocks %s, want %s", got, want)
	}
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// TestOVA unpacks an OVA: members in order, manifest sums right, the descriptor
// well-formed XML equal to its golden file, the disk a streamOptimized VMDK that
// qemu-img reads back to the image.
func TestOVA(t *testing.T) {
	rawPath, raw := rawImage(t)
	src, _ := os.Open(rawPath)
	defer src.Close()
	var ova bytes.Buffer
	m := Machine{Name: "kiln", CPUs: 2, MemoryMiB: 2048, Firmware: "efi"}
	n, err := WriteOVA(&ova, src, int64(len(raw)), m, Options{ID: "ova"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(ova.Len()) {
		t.Errorf("WriteOVA returned %d, wrote %d", n, ova.Len())
	}
	tr := tar.NewReader(&ova)
	members := map[string][]byte{}
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Format != tar.FormatUSTAR && h.Format != tar.FormatUnknown {
			t.Errorf("%s: tar format %v, want USTAR", h.Name, h.Format)
		}
		b, _ := io.ReadAll(tr)
		names = append(names, h.Name)
		members[h.Name] = b
	}
	if got, want := strings.Join(names, " "), "kiln.ovf kiln.mf kiln-disk1.vmdk"; got != want {
		t.Fatalf("OVA members %q, want %q (descriptor first, manifest next)", got, want)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(members["kiln.mf"])), "\n") {
		var name, hexsum string
		if _, err := fmt.Sscanf(strings.Replace(line, ")= ", " ", 1), "SHA256(%s %s", &name, &hexsum); err != nil {
			t.Fatalf("manifest line %q: %v", line, err)
		}
		if got := fmt.Sprintf("%x", sha256.Sum256(members[name])); got != hexsum {
			t.Errorf("manifest: %s sha256 %s, member has %s", name, hexsum, got)
		}
	}
	ovf := members["kiln.ovf"]
	if err := xml.Unmarshal(ovf, new(struct{})); err != nil {
		t.Errorf("descriptor is not well-formed XML: %v", err)
	}
	golden := filepath.Join("testdata", "kiln.ovf")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, ovf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(ovf, want) {
		t.Errorf("descriptor differs from %s (go test -update rewrites it):\n%s", golden, ovf)
	}
	if !strings.Contains(string(ovf), fmt.Sprintf(`ovf:size="%d"`, len(members["kiln-disk1.vmdk"]))) {
		t.Error("descriptor's File ovf:size is not the disk member's size")
	}
	if _, err := exec.LookPath("qemu-img"); err == nil {
		p := filepath.Join(t.TempDir(), "kiln-disk1.vmdk")
		os.WriteFile(p, members["kiln-disk1.vmdk"], 0o644)
		if got := convertBack(t, p, "vmdk", int64(len(raw))); !bytes.Equal(got, raw) {
			t.Error("OVA disk does not read back to the image")
		}
	}
}

func TestOVAMachineErrors(t *testing.T) {
	for _, m := range []Machine{{}, {Name: "k", CPUs: 1, MemoryMiB: 2048, Firmware: "uefi"}, {Name: "k", CPUs: 0, MemoryMiB: 2048, Firmware: "efi"}} {
		if _, err := WriteOVA(io.Discard, nil, 0, m, Options{}, t.TempDir()); err == nil {
			t.Errorf("WriteOVA(%+v) = nil error, want one", m)
		}
	}
}
