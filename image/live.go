package image

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"kiln.dev/kiln/image/esp"
	"kiln.dev/kiln/image/iso"
	"kiln.dev/kiln/image/liveinstall"
	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/partitions"
)

// Paths inside the live ISO (ISO 9660 names, upper case).
const (
	isoGRUBCfg  = "BOOT/GRUB/GRUB.CFG"
	isoGRUBCD   = "BOOT/GRUB/ELTORITO.IMG" // El Torito BIOS boot file
	isoGRUBCore = "BOOT/GRUB/CORE.IMG"     // loaded by the MBR's boot code when dd'ed to a stick
	isoKernel   = "BOOT/VMLINUZ"
	isoInitrd   = "BOOT/INITRD"
	isoESP      = "BOOT/ESP.IMG" // El Torito UEFI image and the GPT's partition 1
	// ISORoot is the live root squashfs; stage 1 finds it by this path.
	ISORoot = liveinstall.RootPath
)

// isoTime is every date in the ISO (the ESP's own dates are 1980-01-01).
var isoTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// LiveCmdline is the live system's kernel command line: stage 1 finds the
// medium carrying kiln.live's ID and mounts its root squashfs through
// dm-verity with rootVerity (the kiln.verity value of Payloads.RootVerity:
// LIVE/ROOT.SFS is the slots' squashfs with its hash tree); there is no
// slot and no root= partition.
func LiveCmdline(s Spec, rootVerity string) string {
	return "kiln.live=" + partitions.LiveID(s.ApplianceID, s.Version, s.Generation) +
		" " + verity.CmdlineParam + "=" + rootVerity + " ro console=tty0 console=ttyS0,115200 panic=10"
}

// liveGRUBConfig is the live ISO's grub.cfg (BIOS: CD-ROM and stick).
func liveGRUBConfig(s Spec, p *Payloads) []byte {
	return fmt.Appendf(nil, `# kiln live ISO (legacy BIOS), rendered by image.liveGRUBConfig.
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout_style=hidden
set timeout=0
set default=0
menuentry "kiln %s (live)" {
  echo "kiln: loading the live system"
  linux /%s %s
  initrd /%s
}
`, s.Version, isoKernel, LiveCmdline(s, p.RootVerity), isoInitrd)
}

// liveEntry is the ESP image's one boot entry (UEFI: systemd-boot). It has no
// try counter: a live medium is never updated.
func liveEntry(s Spec, p *Payloads) []byte {
	return fmt.Appendf(nil, "title kiln %s (live)\nlinux /kiln/live/vmlinuz\ninitrd /kiln/live/initrd\noptions %s\n", s.Version, LiveCmdline(s, p.RootVerity))
}

// liveESPSize fits systemd-boot, kernel and initrd with room to spare, at
// least 40 MiB: a FAT32 with 512-byte clusters needs 65525 clusters.
func liveESPSize(p *Payloads) int64 {
	need := int64(len(p.BootEFI)+len(p.Kernel)+len(p.Initrd)) + 4<<20
	need += need / 8
	return max(40<<20, (need+(1<<20)-1)&^((1<<20)-1))
}

// WriteISO writes the live ISO at out: GRUB for BIOS (El Torito, and through
// the MBR when dd'ed), systemd-boot in an ESP image for UEFI (El Torito, and
// through the GPT when dd'ed), kernel, initrd, the root squashfs, and what
// installs the raw image raw (WriteDisk's output) to a disk: its install map
// and the bytes that are not the root (image/liveinstall).
func WriteISO(ctx context.Context, s Spec, p *Payloads, raw, out string) error {
	t0 := time.Now()
	if _, err := verity.ParseParams(p.RootVerity); err != nil {
		return fmt.Errorf("live ISO: the payloads' root has no verity tree: %w", err)
	}
	if p.BIOS == nil || p.BIOS.LiveCD == nil {
		return fmt.Errorf("live ISO: the payloads have no GRUB images (build them with BuildPayloads)")
	}
	work := s.WorkDir
	if work == "" {
		tmp, err := os.MkdirTemp("", "kiln-iso-")
		if err != nil {
			return fmt.Errorf("creating work dir: %w", err)
		}
		defer os.RemoveAll(tmp)
		work = tmp
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("creating output dir: %w", err)
	}
	espPath := filepath.Join(work, "live-esp.img")
	ef, err := os.Create(espPath)
	if err != nil {
		return fmt.Errorf("creating the live ESP image: %w", err)
	}
	size := liveESPSize(p)
	err = ef.Truncate(size)
	if err == nil {
		err = esp.Write(ef, 0, esp.Options{Size: size, VolumeID: volumeID(s.ApplianceID + "/live"), Label: "KILN-LIVE"}, []esp.File{
			{Path: "EFI/BOOT/BOOTX64.EFI", Data: p.BootEFI},
			{Path: "loader/loader.conf", Data: []byte(LoaderConf)},
			{Path: "loader/entries/kiln-live.conf", Data: liveEntry(s, p)},
			{Path: "kiln/live/vmlinuz", Data: p.Kernel},
			{Path: "kiln/live/initrd", Data: p.Initrd},
		})
	}
	if cerr := ef.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing the live ESP image: %w", err)
	}
	dataPath := filepath.Join(work, "disk.dat")
	m, err := installMap(raw, p.RootPath, dataPath)
	if err != nil {
		return err
	}
	liveID := partitions.LiveID(s.ApplianceID, s.Version, s.Generation)
	files := []iso.File{
		{Path: liveinstall.MapPath, Data: m.Marshal()},
		{Path: liveinstall.DataPath, Source: dataPath},
		{Path: isoGRUBCfg, Data: liveGRUBConfig(s, p)},
		{Path: isoGRUBCD, Data: p.BIOS.LiveCD},
		{Path: isoGRUBCore, Data: p.BIOS.LiveCore},
		{Path: isoKernel, Data: p.Kernel},
		{Path: isoInitrd, Data: p.Initrd},
		{Path: isoESP, Source: espPath},
		{Path: ISORoot, Source: p.RootPath},
	}
	tmp := out + ".tmp"
	defer os.Remove(tmp)
	lay, err := iso.Write(tmp, iso.Options{
		VolumeID: "KILN", VolumeSetID: partitions.LiveVolumeSetID(liveID),
		Publisher: "kiln", Application: "kiln " + s.Version + " live", Time: isoTime,
		BIOSBoot: isoGRUBCD, EFIBoot: isoESP,
		Hybrid: &iso.Hybrid{
			DiskGUID: partitions.PartUUID(s.ApplianceID, "live-disk"),
			ESPGUID:  partitions.PartUUID(s.ApplianceID, "live-esp"),
			ESPName:  "kiln-live-esp",
		},
	}, files)
	if err != nil {
		return fmt.Errorf("writing the live ISO: %w", err)
	}
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening the live ISO: %w", err)
	}
	defer f.Close()
	// Booted as a disk, the MBR's GRUB boot code loads CORE.IMG from its extent.
	core := lay.Files[isoGRUBCore]
	if err := patchGRUB(f, p.BIOS.BootImg, p.BIOS.LiveCore, uint64(core.Offset()/partitions.SectorSize)); err != nil {
		return fmt.Errorf("live ISO: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing the live ISO: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing the live ISO: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("moving the live ISO into place: %w", err)
	}
	s.logger().Info("live ISO written", "path", out, "bytes", lay.Size(), "took", time.Since(t0).Round(time.Millisecond))
	return ctx.Err()
}

// installMap maps the raw image at raw onto the root squashfs (both slots)
// and the data file it writes at dataPath (everything else that is not zero).
func installMap(raw, root, dataPath string) (liveinstall.Map, error) {
	img, err := os.Open(raw)
	if err != nil {
		return liveinstall.Map{}, fmt.Errorf("live ISO install map: %w", err)
	}
	defer img.Close()
	rf, err := os.Open(root)
	if err != nil {
		return liveinstall.Map{}, fmt.Errorf("live ISO install map: %w", err)
	}
	defer rf.Close()
	ist, err := img.Stat()
	if err != nil {
		return liveinstall.Map{}, err
	}
	rst, err := rf.Stat()
	if err != nil {
		return liveinstall.Map{}, err
	}
	var slots []int64
	for _, role := range []partitions.Role{partitions.RoleRootA, partitions.RoleRootB} {
		part, _ := partitions.ByRole(role)
		slots = append(slots, int64(part.Start))
	}
	df, err := os.Create(dataPath)
	if err != nil {
		return liveinstall.Map{}, fmt.Errorf("live ISO install data: %w", err)
	}
	defer df.Close()
	w := bufio.NewWriterSize(df, 1<<20)
	m, err := liveinstall.Build(img, ist.Size(), rf, rst.Size(), slots, w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = df.Close()
	}
	if err != nil {
		return liveinstall.Map{}, fmt.Errorf("live ISO install map of %s: %w", raw, err)
	}
	return m, nil
}
