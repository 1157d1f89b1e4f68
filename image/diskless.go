package image

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"kiln.dev/kiln/image/initramfs"
	"kiln.dev/kiln/image/kmod"
)

// The diskless client image is what the appliance network-boots a diskless
// machine into: the appliance's own kernel and an initrd whose /init is
// kiln-diskless (init/diskless: DHCP, the root image over NFSv4.2 with a
// tmpfs overlay, the home, switch root). It holds the NIC drivers of the
// vetting image and the NFS client and overlayfs; nothing else (the root
// image brings its own modules for what runs after the switch). Both files
// go into the root at DisklessDir, where httpboot serves them, and next to
// a built image in diskless/.

// DisklessDir is where the root filesystem holds the diskless client image.
const DisklessDir = "/usr/lib/kiln/diskless"

// File names of the diskless client image in DisklessDir and diskless/.
const (
	DisklessKernel = "vmlinuz"
	DisklessInitrd = "initrd"
)

// disklessModules are the initrd's modules beyond the NICs: the NFSv4
// client (with sunrpc and its dependencies) and overlayfs.
var disklessModules = []string{"nfsv4", "overlay", "af_packet"}

// disklessModuleLists returns the required and optional modules: the NICs of
// the vetting image (without its storage drivers) and the NFS client.
func disklessModuleLists() (required, optional []string) {
	required = append([]string{"virtio_net", "virtio_pci", "e1000", "e1000e", "igb", "ixgbe", "i40e", "mlx5_core", "bnxt_en"}, disklessModules...)
	optional = []string{"igc", "ice", "tg3", "bnx2x", "mlx4_en", "r8169", "virtio_rng"}
	return required, optional
}

// disklessInitrd builds the diskless client's initrd (gzip newc cpio,
// reproducible).
func disklessInitrd(s Spec, k *kernelTree, mods []*kmod.Module) ([]byte, error) {
	bin, err := os.ReadFile(s.Diskless)
	if err != nil {
		return nil, fmt.Errorf("reading the diskless client binary: %w", err)
	}
	if err := checkStatic("--diskless", s.Diskless, bin); err != nil {
		return nil, err
	}
	t := tree{}
	t.file("/init", 0o755, bin)
	t.link("/sbin/modprobe", "/init")
	modFiles, err := k.moduleFiles(mods)
	if err != nil {
		return nil, err
	}
	for name, data := range modFiles {
		t.file("/lib/modules/"+k.release+"/"+name, 0o644, data)
	}
	for _, d := range []string{"/dev", "/proc", "/sys", "/run", "/newroot"} {
		t.dir(d)
	}
	files := make([]initramfs.File, 0, len(t))
	for p, e := range t {
		files = append(files, initramfs.File{Path: p, Mode: e.mode, Data: e.data, Link: e.link, Dir: e.dir})
	}
	var b bytes.Buffer
	if err := initramfs.Write(&b, files); err != nil {
		return nil, fmt.Errorf("writing the diskless initrd: %w", err)
	}
	return b.Bytes(), nil
}

// WriteDiskless writes the diskless client's kernel and initrd into dir
// (out/diskless next to out/kiln.img), for `kiln serve` on a host to hand out.
func WriteDiskless(p *Payloads, dir string) error {
	if p.DisklessInitrd == nil {
		return fmt.Errorf("the image was built without the diskless client image (--diskless)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	for name, data := range map[string][]byte{DisklessKernel: p.Kernel, DisklessInitrd: p.DisklessInitrd} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("writing the diskless client image's %s: %w", name, err)
		}
	}
	return nil
}
