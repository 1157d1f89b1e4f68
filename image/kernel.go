package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"kiln.dev/kiln/image/debs"
	"kiln.dev/kiln/image/kmod"
)

// Root-path modules: what stage 1 needs to reach and mount the root squashfs.
var initramfsModules = []string{
	"virtio_blk", "virtio_pci", "virtio_scsi", "sd_mod", "ahci", "nvme",
	"usb-storage", "uas", "xhci_pci", "squashfs",
	"dm-verity", // the verified root (init/stage1/verity.go), with dm-mod and dm-bufio
	// The live ISO (init/stage1/live.go): CD-ROM drives and a loop device over
	// the root squashfs inside the ISO 9660 image.
	"sr_mod", "loop",
	// Other hypervisors' disk controllers (docs/image.md): VMware's LSI Logic
	// (parallel and SAS) and PVSCSI, Hyper-V's VMBus storage, and the PIIX IDE
	// of Hyper-V generation 1 and VirtualBox.
	"mptspi", "mptsas", "vmw_pvscsi", "hv_vmbus", "hv_storvsc", "ata_piix",
}

// Modules of the root filesystem besides the root-path ones: required ones must
// exist in the kernel (as a module or built in); optional ones are taken when present.
var (
	rootModules = []string{
		"virtio_blk", "virtio_pci", "virtio_scsi", "sd_mod", "ahci", "nvme", "usb-storage", "uas",
		"xhci_pci", "ehci_pci",
		"squashfs", "ext4", "crc32c", "vfat", "nls_cp437", "nls_ascii", "nls_iso8859-1", "nls_utf8", "efivarfs",
		"evdev", "button", "i6300esb",
		"qemu_fw_cfg", // a VM's config passed with -fw_cfg (init/pid1/fwcfg.go)
		"virtio_net", "e1000", "e1000e", "igb", "ixgbe", "r8169", "virtio_rng", "virtio_console",
		"mptspi", "mptsas", "vmw_pvscsi", "hv_vmbus", "hv_storvsc", "ata_piix", // see initramfsModules
		"vmxnet3", "hv_netvsc", "hv_utils", // VMware and Hyper-V NICs; Hyper-V shutdown and time sync
		"nf_tables", "nft_ct", "nft_chain_nat", "nft_masq", "nf_nat", "nft_reject_inet", "nft_limit",
		"nfsd", "target_core_mod", "iscsi_target_mod", "target_core_iblock", "target_core_file",
		"bridge", "8021q", "veth", "tun", "loop",
	}
	rootOptionalModules = []string{
		"nft_counter", "nft_nat", "nft_redir", "nft_log", "nft_reject", "nft_reject_ipv4", "nft_reject_ipv6",
		"nft_fib", "nft_fib_inet", "nft_fib_ipv4", "nft_fib_ipv6", "nft_quota", "nft_numgen", "nft_hash",
		"nft_socket", "nft_tproxy", "nft_connlimit", "nft_objref", "nf_conntrack", "nf_conntrack_tftp",
		"nf_nat_tftp", "crc32c_intel", "virtio_scsi",
	}
)

// kernelTree is the parts of the kernel package an image uses.
type kernelTree struct {
	release   string            // "6.1.0-56-amd64"
	vmlinuz   []byte            // boot/vmlinuz-<release>
	tree      *kmod.Tree        // every module's .modinfo
	order     []byte            // modules.order
	builtin   []byte            // modules.builtin
	builtinMI []byte            // modules.builtin.modinfo
	debPath   string            // the kernel package
	modData   map[string][]byte // module files keyed by path relative to the modules dir
}

// readKernel reads the kernel .deb in one pass: the kernel image, the module
// metadata files, every module's .modinfo and its bytes. Holding all modules
// (~330 MB) until keepModules drops the unused ones costs less than decompressing
// the package a second time (measured 3-4 s).
func readKernel(ctx context.Context, debPath, release string) (*kernelTree, error) {
	k := &kernelTree{release: release, debPath: debPath, modData: map[string][]byte{}}
	modDir := "lib/modules/" + release + "/"
	var mods []kmod.Module
	err := debs.WalkDeb(ctx, debPath, func(h *tar.Header, r io.Reader) error {
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		switch {
		case h.Name == "boot/vmlinuz-"+release:
			return readInto(&k.vmlinuz, r, h.Name)
		case h.Name == modDir+"modules.order":
			return readInto(&k.order, r, h.Name)
		case h.Name == modDir+"modules.builtin":
			return readInto(&k.builtin, r, h.Name)
		case h.Name == modDir+"modules.builtin.modinfo":
			return readInto(&k.builtinMI, r, h.Name)
		case strings.HasPrefix(h.Name, modDir) && strings.HasSuffix(h.Name, ".ko"):
			var data []byte
			if err := readInto(&data, r, h.Name); err != nil {
				return err
			}
			info, err := kmod.ParseModinfo(bytes.NewReader(data))
			if err != nil {
				return fmt.Errorf("reading %s: %w", h.Name, err)
			}
			rel := strings.TrimPrefix(h.Name, modDir)
			mods = append(mods, kmod.Module{Path: rel, Info: info})
			k.modData[rel] = data
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if k.vmlinuz == nil {
		return nil, fmt.Errorf("kernel package %s has no boot/vmlinuz-%s: is the lock's kernel pin right? run make lock", debPath, release)
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("kernel package %s has no modules under /%s", debPath, modDir)
	}
	k.tree = kmod.NewTree(mods, strings.Split(string(k.builtin), "\n"))
	return k, nil
}

// keepModules drops the bytes of every module outside the given closures.
func (k *kernelTree) keepModules(closures ...[]*kmod.Module) error {
	kept := map[string][]byte{}
	for _, mods := range closures {
		for _, m := range mods {
			data, ok := k.modData[m.Path]
			if !ok {
				return fmt.Errorf("module %s is listed but was not read from %s", m.Path, k.debPath)
			}
			kept[m.Path] = data
		}
	}
	k.modData = kept
	return nil
}

// moduleFiles returns the files of /lib/modules/<release>/ for a module closure:
// the modules, Go-generated modules.dep/alias/softdep, and filtered modules.order
// plus the kernel's modules.builtin(.modinfo). Keys are relative to the modules dir.
func (k *kernelTree) moduleFiles(mods []*kmod.Module) (map[string][]byte, error) {
	files, err := kmod.Files(mods)
	if err != nil {
		return nil, err
	}
	for _, m := range mods {
		files[m.Path] = k.modData[m.Path]
	}
	if k.order != nil {
		files["modules.order"] = kmod.FilterOrder(k.order, mods)
	}
	if k.builtin != nil {
		files["modules.builtin"] = k.builtin
	}
	if k.builtinMI != nil {
		files["modules.builtin.modinfo"] = k.builtinMI
	}
	return files, nil
}

func readInto(dst *[]byte, r io.Reader, name string) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	*dst = data
	return nil
}
