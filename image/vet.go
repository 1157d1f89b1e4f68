package image

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"kiln.dev/kiln/image/initramfs"
	"kiln.dev/kiln/image/kmod"
)

// The vetting live image is what the appliance network-boots a machine
// under test into: the appliance's own kernel and an initrd whose /init is
// kiln-agent (PID 1 mode: mounts, drivers, DHCP, the agent, the SSH hold),
// with the u-root busybox for the hold's shell and the drivers of common
// server NICs and storage controllers. Both files go into the root at
// VetDir, where httpboot serves them, and next to a built image in vet/.
//
// Firmware files are not included (Debian ships them outside the kernel
// package): the NIC drivers listed run from the firmware on the card
// (ice falls back to its safe mode without its DDP package).

// VetDir is where the root filesystem holds the live image.
const VetDir = "/usr/lib/kiln/vet"

// File names of the live image in VetDir and in the vet/ directory that
// `kiln image build` writes next to the disk image.
const (
	VetKernel = "vmlinuz"
	VetInitrd = "initrd"
)

// Modules of the live image: required ones must be in the kernel (a module
// or built in: af_packet, which DHCP needs, is built into Debian's);
// optional ones are taken when the kernel has them.
var (
	vetModules = []string{
		"virtio_net", "virtio_blk", "virtio_scsi", "virtio_pci",
		"e1000", "e1000e", "igb", "ixgbe", "i40e", "mlx5_core", "bnxt_en",
		"nvme", "ahci", "sd_mod", "megaraid_sas", "mpt3sas",
		"af_packet",
	}
	vetOptionalModules = []string{
		// More NICs found in servers.
		"igc", "ice", "tg3", "bnx2x", "mlx4_en", "r8169",
		// More storage controllers, and USB disks.
		"smartpqi", "hpsa", "aacraid", "xhci_pci", "ehci_pci", "usb-storage", "uas",
		// A VM's entropy source: without RDRAND (QEMU's TCG CPUs) the
		// kernel's random pool, which DHCP and the SSH host key wait for,
		// can take minutes to fill on an idle live image.
		"virtio_rng",
		// Temperatures (hwmon) and memory error counters (EDAC), which the
		// CPU and memory stages compare before and after.
		"coretemp", "k10temp", "skx_edac", "i10nm_edac", "sb_edac", "ie31200_edac", "igen6_edac",
		"pnd2_edac", "amd64_edac",
	}
)

// vetInitrd builds the live image's initrd (gzip newc cpio, reproducible
// like the appliance's).
func vetInitrd(s Spec, k *kernelTree, mods []*kmod.Module) ([]byte, error) {
	files, err := vetFiles(s, k, mods)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := initramfs.Write(&b, files); err != nil {
		return nil, fmt.Errorf("writing the vetting initrd: %w", err)
	}
	return b.Bytes(), nil
}

// vetFiles lists the live image's initrd.
func vetFiles(s Spec, k *kernelTree, mods []*kmod.Module) ([]initramfs.File, error) {
	agent, err := os.ReadFile(s.Agent)
	if err != nil {
		return nil, fmt.Errorf("reading the agent binary for the vetting image: %w", err)
	}
	if err := checkStatic("--agent", s.Agent, agent); err != nil {
		return nil, err
	}
	t := tree{}
	t.file("/init", 0o755, agent)
	t.link("/sbin/modprobe", "/init")
	if s.Busybox != "" {
		bb, err := os.ReadFile(s.Busybox)
		if err != nil {
			return nil, fmt.Errorf("reading busybox for the vetting image: %w", err)
		}
		if err := checkStatic("--busybox", s.Busybox, bb); err != nil {
			return nil, err
		}
		t.file("/bin/bb", 0o755, bb)
		cmds := BusyboxCommands()
		for _, c := range cmds {
			t.link("/bin/"+c, "bb")
		}
		// The SSH hold runs /bin/sh; u-root's busybox resolves a chain of
		// links to its last one, so sh → gosh → bb runs gosh.
		if slices.Contains(cmds, "gosh") {
			t.link("/bin/sh", "gosh")
		}
	}
	modFiles, err := k.moduleFiles(mods)
	if err != nil {
		return nil, err
	}
	for name, data := range modFiles {
		t.file("/lib/modules/"+k.release+"/"+name, 0o644, data)
	}
	t.file("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	t.file("/etc/group", 0o644, []byte("root:x:0:\n"))
	t.file("/etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost\n::1\tlocalhost\n"))
	t.file("/etc/os-release", 0o644, fmt.Appendf(nil, "NAME=\"kiln vetting\"\nID=kiln-vet\nVERSION=%q\nVERSION_ID=%q\n", s.Version, s.Version))
	t.link("/etc/resolv.conf", "/run/resolv.conf")
	t.link("/etc/mtab", "/proc/self/mounts")
	for _, d := range []string{"/dev", "/proc", "/sys", "/run", "/tmp", "/root"} {
		t.dir(d)
	}
	files := make([]initramfs.File, 0, len(t))
	for p, e := range t {
		files = append(files, initramfs.File{Path: p, Mode: e.mode, Data: e.data, Link: e.link, Dir: e.dir})
	}
	return files, nil
}

// checkStatic rejects a dynamically linked program: the initrd has no
// dynamic loader or libraries, and the kernel's "Failed to execute /init
// (error -2)" would be all the operator saw.
func checkStatic(flag, path string, data []byte) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s %s: not an ELF program: %w", flag, path, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s %s is dynamically linked, and the vetting initrd has no dynamic loader: build it with CGO_ENABLED=0 (make build does)", flag, path)
		}
	}
	return nil
}

// WriteVet writes the live image's kernel and initrd into dir (out/vet
// next to out/kiln.img), for `kiln serve` on a host to hand out.
func WriteVet(p *Payloads, dir string) error {
	if p.VetInitrd == nil {
		return fmt.Errorf("the image was built without the vetting live image (--agent)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	for name, data := range map[string][]byte{VetKernel: p.Kernel, VetInitrd: p.VetInitrd} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("writing the vetting image's %s: %w", name, err)
		}
	}
	return nil
}
