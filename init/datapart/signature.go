package datapart

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// Kind classifies what a partition holds.
type Kind int

const (
	// Blank: no signature and nothing but zeros at the start; safe to format.
	Blank Kind = iota
	// Ext: an ext2/3/4 file system; checked and mounted, never formatted.
	Ext
	// Foreign: anything else, including unrecognized data; never touched.
	Foreign
)

func (k Kind) String() string {
	switch k {
	case Blank:
		return "blank"
	case Ext:
		return "ext"
	}
	return "foreign"
}

// Signature is what Detect found.
type Signature struct {
	Kind Kind
	// Name is the format: "ext4", "xfs", "unknown data" … ("" when blank).
	Name string
	// Label is the file system label, when known.
	Label string
	// Bytes is the file system size from its superblock (ext only).
	Bytes int64
}

// probeSize is how much of the partition's start Detect reads; every
// signature below lives in it, and a blank partition must be zero through it.
const probeSize = 1 << 20

// Detect classifies the content of a partition of size bytes.
func Detect(r io.ReaderAt, size int64) (Signature, error) {
	n := min(size, probeSize)
	b := make([]byte, n)
	if _, err := r.ReadAt(b, 0); err != nil && err != io.EOF {
		return Signature{}, fmt.Errorf("reading partition start: %w", err)
	}
	at := func(off int, magic string) bool {
		return off+len(magic) <= len(b) && string(b[off:off+len(magic)]) == magic
	}
	if len(b) >= 2048 && binary.LittleEndian.Uint16(b[1024+56:]) == 0xEF53 {
		return extSignature(b[1024:2048]), nil
	}
	foreign := []struct {
		off         int
		magic, name string
	}{
		{0, "XFSB", "xfs"},
		{0x10040, "_BHRfS_M", "btrfs"},
		{0, "hsqs", "squashfs"},
		{0, "LUKS\xba\xbe", "LUKS encrypted volume"},
		{512, "LABELONE", "LVM physical volume"},
		{4096 - 10, "SWAPSPACE2", "swap"},
		{4096 - 10, "SWAP-SPACE", "swap"},
		{3, "NTFS    ", "ntfs"},
		{0x8001, "CD001", "iso9660"},
		{1024, "\x10\x20\xf5\xf2", "f2fs"},
		{512, "EFI PART", "GPT partition table"},
		{0, "\x7fELF", "ELF executable"},
	}
	for _, f := range foreign {
		if at(f.off, f.magic) {
			return Signature{Kind: Foreign, Name: f.name}, nil
		}
	}
	if at(510, "\x55\xaa") {
		if at(54, "FAT") || at(82, "FAT32") {
			return Signature{Kind: Foreign, Name: "vfat"}, nil
		}
		return Signature{Kind: Foreign, Name: "boot sector or MBR"}, nil
	}
	for _, c := range b {
		if c != 0 {
			return Signature{Kind: Foreign, Name: "unknown data"}, nil
		}
	}
	return Signature{Kind: Blank}, nil
}

// extSignature reads an ext superblock.
func extSignature(sb []byte) Signature {
	compat := binary.LittleEndian.Uint32(sb[0x5C:])
	incompat := binary.LittleEndian.Uint32(sb[0x60:])
	name := "ext2"
	if compat&0x4 != 0 { // has_journal
		name = "ext3"
	}
	if incompat&(0x40|0x80|0x200) != 0 { // extents, 64bit, flex_bg
		name = "ext4"
	}
	blocks := uint64(binary.LittleEndian.Uint32(sb[0x4:]))
	if incompat&0x80 != 0 {
		blocks |= uint64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
	}
	bsize := int64(1024) << binary.LittleEndian.Uint32(sb[0x18:])
	label := string(bytes.TrimRight(sb[0x78:0x88], "\x00"))
	return Signature{Kind: Ext, Name: name, Label: label, Bytes: int64(blocks) * bsize}
}
