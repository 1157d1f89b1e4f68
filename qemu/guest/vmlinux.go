package guest

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// A bzImage decompresses itself, which under TCG takes seconds. QEMU also
// boots the uncompressed ELF vmlinux through its PVH entry point (the Xen
// PHYS32_ENTRY note; Debian builds with CONFIG_PVH=y), so the store keeps
// one, cut out of the bzImage's payload.

// xzMagic starts an xz stream.
var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0}

// bzPayload returns the compressed kernel inside a bzImage (boot protocol
// 2.08 or later: payload_offset and payload_length in the setup header).
func bzPayload(img []byte) ([]byte, error) {
	if len(img) < 0x250 || string(img[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not a bzImage (no HdrS setup header)")
	}
	if v := binary.LittleEndian.Uint16(img[0x206:]); v < 0x208 {
		return nil, fmt.Errorf("boot protocol %#x has no payload fields", v)
	}
	setupSects := int(img[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	off := (setupSects+1)*512 + int(binary.LittleEndian.Uint32(img[0x248:]))
	n := int(binary.LittleEndian.Uint32(img[0x24c:]))
	if off < 0 || n <= 0 || off+n > len(img) {
		return nil, fmt.Errorf("payload %d+%d lies outside the %d-byte image", off, n, len(img))
	}
	return img[off : off+n], nil
}

// hasPVHEntry reports whether an ELF kernel has the PVH entry note.
func hasPVHEntry(vmlinux []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return false
	}
	const xenElfnotePhys32Entry = 18
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			continue
		}
		for len(b) >= 12 {
			nameSz := int(binary.LittleEndian.Uint32(b))
			descSz := int(binary.LittleEndian.Uint32(b[4:]))
			typ := binary.LittleEndian.Uint32(b[8:])
			end := 12 + align4(nameSz) + align4(descSz)
			if nameSz < 0 || descSz < 0 || end > len(b) {
				break
			}
			if typ == xenElfnotePhys32Entry && string(bytes.TrimRight(b[12:12+nameSz], "\x00")) == "Xen" {
				return true
			}
			b = b[end:]
		}
	}
	return false
}

func align4(n int) int { return (n + 3) &^ 3 }

// writeVmlinux writes the PVH-bootable vmlinux of the bzImage at bzPath to
// out. A kernel that cannot be booted that way (another compressor, no PVH
// note, no xz on the host) leaves out unwritten: the guest boots the
// bzImage instead.
func writeVmlinux(ctx context.Context, bzPath, out string) error {
	img, err := os.ReadFile(bzPath)
	if err != nil {
		return err
	}
	payload, err := bzPayload(img)
	if err != nil || !bytes.HasPrefix(payload, xzMagic) {
		return nil
	}
	xz, err := exec.LookPath("xz")
	if err != nil {
		return nil
	}
	// The payload ends with the decompressor's 4-byte size field after the
	// xz stream: --single-stream ignores it.
	cmd := exec.CommandContext(ctx, xz, "-dc", "--single-stream")
	cmd.Stdin = bytes.NewReader(payload)
	vmlinux, err := cmd.Output()
	if err != nil || !hasPVHEntry(vmlinux) {
		return nil
	}
	return os.WriteFile(out, vmlinux, 0o644)
}
