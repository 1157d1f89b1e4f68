package image

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"kiln.dev/kiln/image/debs"
	"kiln.dev/kiln/partitions"
)

// Legacy BIOS boot: GRUB i386-pc from Debian's grub-pc-bin. The MBR's boot
// code (boot.img, the protective partition table kept) loads GRUB's core image
// from the BIOS boot partition; the core image (grub-mkimage from the pinned
// grub-common, with every module it needs built in) reads grub/grub.cfg from
// the ESP, which boots the same loader/entries systemd-boot does
// (ota/bootentry.GRUBConfig).

// grubModules are built into the core image: the ESP holds no GRUB modules.
var grubModules = []string{
	"biosdisk", "part_gpt", "part_msdos", "fat", "normal", "linux", "boot", "configfile",
	"test", "loadenv", "echo", "regexp", "serial", "terminal", "reboot", "sleep",
}

// grubPrefix is where the core image finds grub.cfg: partition 1 (the ESP) of
// the disk the BIOS booted.
const grubPrefix = "(,gpt1)/grub"

// Offsets in GRUB 2.06's i386-pc boot.img and diskboot.img (include/grub/i386/pc/boot.h).
const (
	grubKernelSector = 0x5c  // boot.img: LBA of the core image's first sector (8 bytes)
	grubBootDrive    = 0x64  // boot.img: 0xff = the drive the BIOS booted
	grubDriveCheck   = 0x66  // boot.img: a jump skipping the drive check; NOPs for hard disks
	grubMBRCodeEnd   = 0x1b8 // boot.img code ends where the disk signature and partition table start
	grubBlocklist    = 0x1f4 // diskboot.img: first blocklist {start u64, len u16, segment u16}
)

// biosBoot is GRUB's boot sector and core image.
type biosBoot struct {
	BootImg []byte // 512 bytes, boot.img
	CoreImg []byte // diskboot.img + the compressed kernel and modules
	// The live ISO's GRUB (image/live.go): read grub.cfg from the ISO 9660
	// file system of the boot device, a CD-ROM or the stick the ISO was dd'ed to.
	LiveCD   []byte // i386-pc-eltorito: cdboot.img + core, the El Torito BIOS boot file
	LiveCore []byte // i386-pc: diskboot.img + core, loaded by the MBR's boot code
}

// grubLiveModules are built into the live ISO's core images.
var grubLiveModules = []string{
	"biosdisk", "iso9660", "normal", "linux", "boot", "configfile", "test", "echo", "serial", "terminal", "reboot", "sleep",
}

// grubLivePrefix is where the live core images find grub.cfg: the boot device's ISO 9660 tree.
const grubLivePrefix = "/BOOT/GRUB"

// buildBIOS extracts GRUB from the pinned packages and assembles the core image.
func buildBIOS(ctx context.Context, s Spec, work string) (*biosBoot, error) {
	cache := debs.Cache{Dir: s.CacheDir}
	paths := map[string]string{}
	for _, name := range []string{"grub-pc-bin", "grub-common"} {
		p, ok := s.Lock.Get(name)
		if !ok {
			return nil, fmt.Errorf("lock file pins no %s package (legacy BIOS boot): run make lock", name)
		}
		deb, err := cache.Fetch(ctx, p)
		if err != nil {
			return nil, err
		}
		paths[name] = deb
	}
	const modDir = "usr/lib/grub/i386-pc/"
	mods, err := debs.Extract(ctx, paths["grub-pc-bin"], func(n string) bool { return strings.HasPrefix(n, modDir) })
	if err != nil {
		return nil, err
	}
	tools, err := debs.Extract(ctx, paths["grub-common"], func(n string) bool { return n == "usr/bin/grub-mkimage" })
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(work, "grub-i386-pc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	for n, b := range mods {
		if err := os.WriteFile(filepath.Join(dir, strings.TrimPrefix(n, modDir)), b, 0o644); err != nil {
			return nil, fmt.Errorf("writing GRUB file: %w", err)
		}
	}
	b := &biosBoot{BootImg: mods[modDir+"boot.img"]}
	if len(b.BootImg) != 512 {
		return nil, fmt.Errorf("%s has no 512-byte boot.img", paths["grub-pc-bin"])
	}
	mkimage := filepath.Join(work, "grub-mkimage")
	if tools["usr/bin/grub-mkimage"] == nil {
		return nil, fmt.Errorf("%s has no grub-mkimage", paths["grub-common"])
	}
	if err := os.WriteFile(mkimage, tools["usr/bin/grub-mkimage"], 0o755); err != nil {
		return nil, fmt.Errorf("writing grub-mkimage: %w", err)
	}
	mk := func(format, prefix string, modules []string) ([]byte, error) {
		core := filepath.Join(work, "core-"+format+".img")
		args := append([]string{"-O", format, "-d", dir, "-p", prefix, "-o", core}, modules...)
		cmd := exec.CommandContext(ctx, mkimage, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("grub-mkimage -O %s (from %s; it needs liblzma and libdevmapper from Debian 12): %v: %s", format, filepath.Base(paths["grub-common"]), err, out)
		}
		b, err := os.ReadFile(core)
		if err != nil {
			return nil, fmt.Errorf("reading GRUB core image: %w", err)
		}
		return b, nil
	}
	if b.CoreImg, err = mk("i386-pc", grubPrefix, grubModules); err != nil {
		return nil, err
	}
	if b.LiveCD, err = mk("i386-pc-eltorito", grubLivePrefix, grubLiveModules); err != nil {
		return nil, err
	}
	if b.LiveCore, err = mk("i386-pc", grubLivePrefix, grubLiveModules); err != nil {
		return nil, err
	}
	bios, _ := partitions.ByRole(partitions.RoleBIOS)
	if uint64(len(b.CoreImg)) > bios.Size {
		return nil, fmt.Errorf("GRUB core image is %d bytes, larger than the %d-byte BIOS boot partition", len(b.CoreImg), bios.Size)
	}
	return b, nil
}

// writeBIOS puts GRUB's boot code into the MBR (its partition table and disk
// signature kept) and the core image at the start of the BIOS boot partition,
// patched with where they are, as grub-bios-setup does. Payloads made without
// BuildPayloads (b nil) give an image that boots UEFI only.
func writeBIOS(f *os.File, b *biosBoot) error {
	if b == nil {
		return nil
	}
	bios, _ := partitions.ByRole(partitions.RoleBIOS)
	return patchGRUB(f, b.BootImg, b.CoreImg, bios.Start/partitions.SectorSize)
}

// patchGRUB writes GRUB's boot.img into the MBR's code area, pointing at the
// core image at 512-byte sector coreLBA, and the core image there with its
// blocklist starting at the next sector.
func patchGRUB(f *os.File, bootImg, coreImg []byte, coreLBA uint64) error {
	mbr := make([]byte, 512)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return fmt.Errorf("reading the protective MBR: %w", err)
	}
	boot := append([]byte(nil), bootImg...)
	copy(boot[3:0x5a], mbr[3:0x5a]) // the BPB area: whatever the disk has (grub-bios-setup keeps it)
	binary.LittleEndian.PutUint64(boot[grubKernelSector:], coreLBA)
	boot[grubBootDrive] = 0xff
	boot[grubDriveCheck], boot[grubDriveCheck+1] = 0x90, 0x90
	copy(mbr[:grubMBRCodeEnd], boot[:grubMBRCodeEnd])
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return fmt.Errorf("writing the MBR boot code: %w", err)
	}
	core := append([]byte(nil), coreImg...)
	sectors := (len(core) + 511) / 512
	if got := binary.LittleEndian.Uint16(core[grubBlocklist+8:]); int(got) != sectors-1 {
		return fmt.Errorf("GRUB core image: blocklist length %d, want %d (not a GRUB 2.06 i386-pc core image?)", got, sectors-1)
	}
	binary.LittleEndian.PutUint64(core[grubBlocklist:], coreLBA+1)
	if _, err := f.WriteAt(core, int64(coreLBA*partitions.SectorSize)); err != nil {
		return fmt.Errorf("writing the GRUB core image: %w", err)
	}
	return nil
}
