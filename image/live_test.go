package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"kiln.dev/kiln/image/flash"
	"kiln.dev/kiln/image/liveinstall"
	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/init/gpt"
	"kiln.dev/kiln/init/isofs"
	"kiln.dev/kiln/partitions"
)

// checkISO reads a built live ISO back: its files are the build's payloads,
// the El Torito entries point at GRUB's CD image and the ESP image, the ESP
// image passes fsck.vfat and holds the live entry, the GPT's one partition is
// the ESP image, the MBR's GRUB boot code loads CORE.IMG, and xorriso agrees.
func checkISO(t *testing.T, path string, s Spec, res *Result) {
	t.Helper()
	p := res.Payloads
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := isofs.Open(f)
	if err != nil {
		t.Fatalf("isofs.Open(%s): %v", path, err)
	}
	if want := partitions.LiveVolumeSetID(partitions.LiveID(s.ApplianceID, s.Version, s.Generation)); v.SetID != want {
		t.Errorf("ISO volume set ID = %q, want %q (stage 1 looks for it)", v.SetID, want)
	}
	for name, want := range map[string][]byte{isoKernel: p.Kernel, isoInitrd: p.Initrd, isoGRUBCfg: liveGRUBConfig(s, p)} {
		if got, err := v.ReadFile(name); err != nil || !bytes.Equal(got, want) {
			t.Errorf("ISO %s: %d bytes (%v), want the build's %d", name, len(got), err, len(want))
		}
	}
	root, err := os.ReadFile(p.RootPath)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v.ReadFile(ISORoot); err != nil || !bytes.Equal(got, root) {
		t.Errorf("ISO %s: %d bytes (%v), want the %d-byte root squashfs", ISORoot, len(got), err, len(root))
	}
	// The live root is verified like a slot's: ROOT.SFS holds the tree the
	// command line's kiln.verity= describes.
	vp, err := verity.ParseParams(p.RootVerity)
	if err != nil {
		t.Fatalf("payload root verity %q: %v", p.RootVerity, err)
	}
	if err := verity.Check(bytes.NewReader(root), vp); err != nil {
		t.Errorf("ISO %s against kiln.verity=%s: %v", ISORoot, p.RootVerity, err)
	}
	for _, want := range []string{"kiln.live=" + partitions.LiveID(s.ApplianceID, s.Version, s.Generation), verity.CmdlineParam + "=" + p.RootVerity} {
		if !strings.Contains(string(liveGRUBConfig(s, p)), want) {
			t.Errorf("grub.cfg lacks %s:\n%s", want, liveGRUBConfig(s, p))
		}
		if !strings.Contains(string(liveEntry(s, p)), want) {
			t.Errorf("kiln-live.conf lacks %s:\n%s", want, liveEntry(s, p))
		}
	}
	cd, _ := v.Lookup(isoGRUBCD)
	espE, _ := v.Lookup(isoESP)
	cat, err := v.Catalog()
	if err != nil || len(cat) != 2 || cat[0].Platform != 0 || cat[0].Block != cd.Block || cat[1].Platform != 0xEF || cat[1].Block != espE.Block {
		t.Errorf("boot catalog = %+v (%v), want BIOS → %s (block %d), UEFI → %s (block %d)", cat, err, isoGRUBCD, cd.Block, isoESP, espE.Block)
	}

	espImg := filepath.Join(t.TempDir(), "esp.img")
	b, _ := v.ReadFile(isoESP)
	os.WriteFile(espImg, b, 0o644)
	out, err := exec.Command("fsck.vfat", "-n", "-l", espImg).CombinedOutput()
	if err != nil {
		t.Errorf("fsck.vfat -n on the live ESP image: %v\n%s", err, out)
	}
	for _, want := range []string{"/EFI/BOOT/BOOTX64.EFI", "/loader/loader.conf", "/loader/entries/kiln-live.conf", "/kiln/live/vmlinuz", "/kiln/live/initrd"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("live ESP image lacks %s:\n%s", want, out)
		}
	}

	st, _ := f.Stat()
	tab, err := gpt.Read(f, st.Size(), 512)
	if err != nil || len(tab.Entries) != 1 || tab.Entries[0].Type != partitions.TypeESP || int64(tab.Entries[0].FirstLBA*512) != espE.Offset {
		t.Errorf("hybrid GPT = %+v (%v), want one ESP partition at byte %d", tab, err, espE.Offset)
	}
	core, _ := v.Lookup(isoGRUBCore)
	mbr := make([]byte, 512)
	f.ReadAt(mbr, 0)
	if got, want := binary.LittleEndian.Uint64(mbr[grubKernelSector:]), uint64(core.Offset/512); got != want {
		t.Errorf("MBR boot code loads sector %d, want CORE.IMG's %d", got, want)
	}
	blk := make([]byte, 512)
	f.ReadAt(blk, core.Offset)
	if got, want := binary.LittleEndian.Uint64(blk[grubBlocklist:]), uint64(core.Offset/512+1); got != want {
		t.Errorf("CORE.IMG blocklist starts at sector %d, want %d", got, want)
	}

	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Log("xorriso not installed: its reading of the live ISO is skipped")
		return
	}
	out, err = exec.Command("xorriso", "-indev", path, "-report_el_torito", "plain", "-report_system_area", "plain").CombinedOutput()
	if err != nil {
		t.Errorf("xorriso: %v\n%s", err, out)
	}
	for _, want := range []string{"El Torito img path :   1  /BOOT/GRUB/ELTORITO.IMG", "El Torito img path :   2  /BOOT/ESP.IMG",
		"GPT partition path :   1  /BOOT/ESP.IMG", "Boot record  : El Torito , MBR protective-msdos-label cyl-align-off GPT", "El Torito img opts :   1  boot-info-table"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("xorriso report lacks %q:\n%s", want, out)
		}
	}
}

// checkISOInstall installs the raw image from the ISO's install map into a
// file, as the recovery menu does onto a disk: the read-back must hash as the
// built image does.
func checkISOInstall(t *testing.T, isoPath string, res *Result) {
	t.Helper()
	f, err := os.Open(isoPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, src, err := liveinstall.Medium(f)
	if err != nil {
		t.Fatalf("liveinstall.Medium(%s): %v", isoPath, err)
	}
	if m.SHA256 != res.SHA256 || m.Size != res.Size {
		t.Errorf("install map: %d bytes sha256 %s, want the image's %d bytes %s", m.Size, m.SHA256, res.Size, res.SHA256)
	}
	disk := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dev, err := flash.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	got, err := liveinstall.Install(context.Background(), dev, m, src, liveinstall.Options{})
	if err != nil {
		t.Fatalf("installing from the ISO: %v", err)
	}
	t.Logf("installed %d bytes from the ISO (%d extents) in %s, verified in %s", got.Bytes, len(m.Extents), got.Write, got.Verify)
}
