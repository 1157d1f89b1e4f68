package iso

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/init/gpt"
	"kiln.dev/kiln/init/isofs"
)

// testImage writes a small hybrid image like the one image.BuildISO makes.
func testImage(t *testing.T, dir string) (string, *Layout, map[string][]byte) {
	t.Helper()
	big := filepath.Join(dir, "root.sfs")
	bigData := bytes.Repeat([]byte("squashfs"), 300_000) // 2.4 MB, not block aligned
	if err := os.WriteFile(big, bigData, 0o644); err != nil {
		t.Fatal(err)
	}
	boot := make([]byte, 4*BlockSize+100)
	for i := range boot {
		boot[i] = byte(i * 7)
	}
	esp := bytes.Repeat([]byte{0xE5}, 3<<20)
	content := map[string][]byte{
		"BOOT/GRUB/ELTORITO.IMG": boot,
		"BOOT/ESP.IMG":           esp,
		"BOOT/GRUB/GRUB.CFG":     []byte("set timeout=0\n"),
		"BOOT/VMLINUZ":           bytes.Repeat([]byte("k"), 5000),
		"LIVE/ROOT.SFS":          bigData,
		"EMPTY.TXT":              nil,
	}
	var files []File
	for p, b := range content {
		if p == "LIVE/ROOT.SFS" {
			files = append(files, File{Path: p, Source: big})
			continue
		}
		files = append(files, File{Path: p, Data: b})
	}
	out := filepath.Join(dir, "kiln.iso")
	lay, err := Write(out, Options{
		VolumeID: "KILN", VolumeSetID: "KILN_0123456789ABCDEF", Publisher: "kiln", Application: "kiln test",
		Time:     time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC),
		BIOSBoot: "BOOT/GRUB/ELTORITO.IMG", EFIBoot: "BOOT/ESP.IMG",
		Hybrid: &Hybrid{DiskGUID: "11111111-2222-3333-4444-555555555555", ESPGUID: "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE", ESPName: "kiln-live-esp"},
	}, files)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return out, lay, content
}

// TestWriteReadBack writes an image and reads every structure back with kiln's
// own reader (init/isofs, init/gpt).
func TestWriteReadBack(t *testing.T) {
	img, lay, content := testImage(t, t.TempDir())
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	if st.Size() != lay.Size() || st.Size()%BlockSize != 0 {
		t.Fatalf("image is %d bytes, layout says %d (want a multiple of %d)", st.Size(), lay.Size(), BlockSize)
	}
	v, err := isofs.Open(f)
	if err != nil {
		t.Fatalf("isofs.Open: %v", err)
	}
	if v.ID != "KILN" || v.SetID != "KILN_0123456789ABCDEF" || v.Blocks != lay.Blocks {
		t.Errorf("volume = %q/%q/%d blocks, want KILN/KILN_0123456789ABCDEF/%d", v.ID, v.SetID, v.Blocks, lay.Blocks)
	}
	for p, want := range content {
		e, err := v.Lookup(strings.ToLower(p))
		if err != nil {
			t.Errorf("Lookup(%s): %v", p, err)
			continue
		}
		if ext := lay.Files[p]; e.Block != ext.Block || int64(e.Size) != ext.Size {
			t.Errorf("%s: directory says block %d size %d, layout %d/%d", p, e.Block, e.Size, ext.Block, ext.Size)
		}
		got, err := v.ReadFile(p)
		if err != nil {
			t.Errorf("ReadFile(%s): %v", p, err)
			continue
		}
		if p == "BOOT/GRUB/ELTORITO.IMG" {
			checkBootInfo(t, got, want, lay.Files[p].Block)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("ReadFile(%s): %d bytes differing from the %d written", p, len(got), len(want))
		}
	}
	if _, err := v.Lookup("BOOT/NOPE"); err == nil {
		t.Error("Lookup(BOOT/NOPE) succeeded, want ErrNotFound")
	}

	cat, err := v.Catalog()
	if err != nil {
		t.Fatalf("Catalog: %v", err)
	}
	bios, efi := lay.Files["BOOT/GRUB/ELTORITO.IMG"], lay.Files["BOOT/ESP.IMG"]
	want := []isofs.BootEntry{
		{Platform: 0, Bootable: true, Media: 0, Sectors: 4, Block: bios.Block},
		{Platform: 0xEF, Bootable: true, Media: 0, Sectors: uint16(efi.Size / 512), Block: efi.Block},
	}
	if len(cat) != len(want) || cat[0] != want[0] || cat[1] != want[1] {
		t.Errorf("Catalog() = %+v, want %+v", cat, want)
	}

	tab, err := gpt.Read(f, st.Size(), 512)
	if err != nil {
		t.Fatalf("gpt.Read: %v", err)
	}
	if len(tab.Entries) != 1 {
		t.Fatalf("GPT has %d partitions, want 1 (the ESP image)", len(tab.Entries))
	}
	p := tab.Entries[0]
	if p.Type != typeESP || p.UUID != "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE" || p.Name != "kiln-live-esp" ||
		p.FirstLBA*512 != uint64(efi.Offset()) || p.Sectors()*512 != uint64(efi.Size) {
		t.Errorf("GPT partition = %+v, want the ESP image at sector %d, %d sectors", p, efi.Offset()/512, efi.Size/512)
	}
	mbr := make([]byte, 512)
	f.ReadAt(mbr, 0)
	if mbr[450] != 0xEE || mbr[510] != 0x55 || mbr[511] != 0xAA || binary.LittleEndian.Uint32(mbr[458:]) != uint32(st.Size()/512-1) {
		t.Errorf("MBR: type %#x, size %d, signature %x: want the protective 0xEE entry over the whole image", mbr[450], binary.LittleEndian.Uint32(mbr[458:]), mbr[510:])
	}
}

func checkBootInfo(t *testing.T, got, orig []byte, block uint32) {
	t.Helper()
	if binary.LittleEndian.Uint32(got[8:]) != 16 || binary.LittleEndian.Uint32(got[12:]) != block ||
		binary.LittleEndian.Uint32(got[16:]) != uint32(len(orig)) {
		t.Errorf("boot info table = pvd %d file %d length %d, want 16 %d %d", binary.LittleEndian.Uint32(got[8:]),
			binary.LittleEndian.Uint32(got[12:]), binary.LittleEndian.Uint32(got[16:]), block, len(orig))
	}
	if !bytes.Equal(got[:8], orig[:8]) || !bytes.Equal(got[64:], orig[64:]) {
		t.Error("boot info table patch changed bytes outside 8-63")
	}
}

// TestReproducible writes the same inputs twice.
func TestReproducible(t *testing.T) {
	a, _, _ := testImage(t, t.TempDir())
	b, _, _ := testImage(t, t.TempDir())
	ha, hb := hashFile(t, a), hashFile(t, b)
	if ha != hb {
		t.Errorf("two images from the same inputs: %x and %x, want identical", ha, hb)
	}
}

func hashFile(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestXorriso has xorriso (libisofs/libisoburn, what most Linux ISOs are made
// with) read the image: its El Torito report, its system area report, and
// every file's LBA and size, compared with the layout.
func TestXorriso(t *testing.T) {
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Skip("skipping: xorriso not installed (make deps installs it)")
	}
	img, lay, _ := testImage(t, t.TempDir())
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("xorriso", append([]string{"-abort_on", "NEVER", "-return_with", "SORRY", "0", "-indev", img}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("xorriso %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if bytes.Contains(out, []byte("FAILURE")) || bytes.Contains(out, []byte("SORRY")) {
			t.Errorf("xorriso %s complains:\n%s", strings.Join(args, " "), out)
		}
		return string(out)
	}
	out := run("-report_el_torito", "plain")
	bios, efi := lay.Files["BOOT/GRUB/ELTORITO.IMG"], lay.Files["BOOT/ESP.IMG"]
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`El Torito catalog\s*:\s*\d+\s+1`),
		regexp.MustCompile(`El Torito boot img\s*:\s*1\s+BIOS\s+y\s+none\s+0x0000\s+0x00\s+4\s+` + strconv.Itoa(int(bios.Block))),
		regexp.MustCompile(`El Torito boot img\s*:\s*2\s+UEFI\s+y\s+none\s+0x0000\s+0x00\s+` + strconv.Itoa(int(efi.Size/512)) + `\s+` + strconv.Itoa(int(efi.Block))),
		regexp.MustCompile(`El Torito img path\s*:\s*1\s+/BOOT/GRUB/ELTORITO.IMG`),
		regexp.MustCompile(`El Torito img path\s*:\s*2\s+/BOOT/ESP.IMG`),
		regexp.MustCompile(`Volume id\s*:\s*'KILN'`),
	} {
		if !want.MatchString(out) {
			t.Errorf("xorriso -report_el_torito lacks %s:\n%s", want, out)
		}
	}
	out = run("-report_system_area", "plain")
	first := efi.Offset() / 512
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`MBR partition\s*:\s*1\s+0x00\s+0xee\s+1\s+` + strconv.FormatInt(lay.Size()/512-1, 10)),
		regexp.MustCompile(`GPT partition name\s*:\s*1\s+6b0069006c006e002d006c006900760065002d00650073007000`),
		regexp.MustCompile(`GPT type GUID\s*:\s*1\s+28732ac11ff8d211ba4b00a0c93ec93b`),
		regexp.MustCompile(`GPT start and size\s*:\s*1\s+` + strconv.FormatInt(first, 10) + `\s+` + strconv.FormatInt(efi.Size/512, 10)),
		regexp.MustCompile(`GPT lba range\s*:\s*64\s+` + strconv.FormatInt(lay.Size()/512-34, 10) + `\s+` + strconv.FormatInt(lay.Size()/512-1, 10)),
		regexp.MustCompile(`GPT partition path\s*:\s*1\s+/BOOT/ESP.IMG`),
	} {
		if !want.MatchString(out) {
			t.Errorf("xorriso -report_system_area lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "GPT backup problems") || strings.Contains(out, "GPT CRC should be") {
		t.Errorf("xorriso finds fault with the backup GPT:\n%s", out)
	}
	out = run("-find", "/", "-type", "f", "-exec", "report_lba", "--")
	for p, ext := range lay.Files {
		if ext.Size == 0 {
			continue
		}
		want := regexp.MustCompile(`File data lba:\s+0\s*,\s*` + strconv.Itoa(int(ext.Block)) + `\s*,\s*` +
			strconv.FormatInt((ext.Size+BlockSize-1)/BlockSize, 10) + `\s*,\s*` + strconv.FormatInt(ext.Size, 10) + `\s*,\s*'/` + regexp.QuoteMeta(p) + `'`)
		if !want.MatchString(out) {
			t.Errorf("xorriso report_lba: %s not at block %d with %d bytes:\n%s", p, ext.Block, ext.Size, out)
		}
	}
}

func TestOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		o     Options
		files []File
		want  string
	}{
		{"lower-case path", Options{Time: time.Unix(0, 0)}, []File{{Path: "boot/vmlinuz"}}, "use only A-Z"},
		{"two dots", Options{Time: time.Unix(0, 0)}, []File{{Path: "A.B.C"}}, "one dot"},
		{"absolute", Options{Time: time.Unix(0, 0)}, []File{{Path: "/BOOT"}}, "relative path"},
		{"volume id", Options{VolumeID: "kiln", Time: time.Unix(0, 0)}, nil, "volume ID"},
		{"missing boot file", Options{BIOSBoot: "BOOT/X", Time: time.Unix(0, 0)}, nil, "not among the files"},
		{"hybrid without EFI", Options{Hybrid: &Hybrid{}, Time: time.Unix(0, 0)}, nil, "needs an EFI boot image"},
		{"file and dir", Options{Time: time.Unix(0, 0)}, []File{{Path: "A"}, {Path: "A/B"}}, "both a file and a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Write(filepath.Join(t.TempDir(), "x.iso"), tc.o, tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Write = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
