package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"kiln.dev/kiln/image/vmdisk"
	"kiln.dev/kiln/internal/atomicfile"
)

// Format is a virtual disk format the raw image converts to.
type Format string

const (
	FormatQcow2 Format = "qcow2" // QEMU/KVM, Proxmox, libvirt (qemu-img)
	FormatVMDK  Format = "vmdk"  // VMware Workstation/Fusion/Player, VirtualBox: monolithicSparse
	FormatOVA   Format = "ova"   // vSphere/ESXi, VMware, VirtualBox import: OVF + streamOptimized VMDK
	FormatVHDX  Format = "vhdx"  // Hyper-V
)

// Formats lists every format, in a fixed order.
func Formats() []Format { return []Format{FormatQcow2, FormatVMDK, FormatOVA, FormatVHDX} }

// ParseFormat parses a format name.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats() {
		if string(f) == s {
			return f, nil
		}
	}
	var names []string
	for _, f := range Formats() {
		names = append(names, string(f))
	}
	sort.Strings(names)
	return "", fmt.Errorf("format %q: use one of %s", s, strings.Join(names, ", "))
}

// ConvertOptions tune Convert.
type ConvertOptions struct {
	// VirtualSize is the disk size the VM sees (0: the image's size). The data
	// partition grows into the rest on first boot.
	VirtualSize int64
	// Name is the VM name in an OVA ("kiln" when empty).
	Name string
	// RawSHA256 is the raw image's SHA-256 when the caller knows it (Build
	// returns it); Convert hashes the image otherwise.
	RawSHA256 string
}

// Convert writes the raw image at raw as format to out (through a temporary file
// renamed into place, so a failed conversion leaves nothing that looks usable).
// Identifiers inside the file derive from the raw image's SHA-256: converting the
// same image twice gives the same bytes.
func Convert(ctx context.Context, raw, out string, f Format, o ConvertOptions) error {
	if f == FormatQcow2 {
		if o.VirtualSize != 0 {
			return fmt.Errorf("qcow2 --size: resize the qcow2 afterwards with qemu-img resize")
		}
		return ConvertQcow2(ctx, raw, out)
	}
	sum := o.RawSHA256
	if sum == "" {
		var err error
		if sum, _, err = HashFile(raw); err != nil {
			return err
		}
	}
	src, err := os.Open(raw)
	if err != nil {
		return fmt.Errorf("opening raw image: %w", err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return fmt.Errorf("opening raw image: %w", err)
	}
	size := st.Size()
	vo := vmdisk.Options{ID: sum, VirtualSize: o.VirtualSize}
	name := o.Name
	if name == "" {
		name = "kiln"
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return atomicfile.Write(out, 0o666, func(dst *os.File) error {
		var err error
		switch f {
		case FormatVMDK:
			_, err = vmdisk.WriteVMDK(dst, src, size, filepath.Base(out), vo)
		case FormatOVA:
			m := vmdisk.Machine{Name: name, CPUs: 2, MemoryMiB: 2048, Firmware: "efi"}
			_, err = vmdisk.WriteOVA(dst, src, size, m, vo, filepath.Dir(out))
		case FormatVHDX:
			_, err = vmdisk.WriteVHDX(dst, src, size, vo)
		default:
			err = fmt.Errorf("unknown format %q", f)
		}
		if err != nil {
			return fmt.Errorf("converting to %s: %w", f, err)
		}
		return nil
	})
}
