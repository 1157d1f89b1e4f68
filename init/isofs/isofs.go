// Package isofs reads what stage 1 and the installer need from an ISO 9660
// image (a CD-ROM or a stick the ISO was written to): the primary volume
// descriptor, files by path with their extents, and the El Torito boot
// catalog. It reads plain ISO 9660 names only (kiln's ISO has no Rock Ridge or
// Joliet) and depends on the standard library alone, so stage 1 stays small.
package isofs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// BlockSize is ISO 9660's logical block size.
const BlockSize = 2048

// ErrNotISO means the device holds no ISO 9660 volume.
var ErrNotISO = errors.New("no ISO 9660 primary volume descriptor")

// ErrNotFound means a path is not in the image.
var ErrNotFound = errors.New("not in the ISO image")

// Volume is an ISO 9660 volume's primary descriptor.
type Volume struct {
	r           io.ReaderAt
	ID          string // volume identifier (what blkid calls LABEL)
	SetID       string // volume set identifier (kiln stores the live medium's ID here)
	Blocks      uint32 // volume space size in blocks
	BootCatalog uint32 // El Torito boot catalog block; 0 without a boot record
	root        Entry
}

// Entry is a file or directory and its extent.
type Entry struct {
	Name   string // without the ";1" version
	Dir    bool
	Block  uint32 // first block of the extent
	Size   uint32 // bytes
	Offset int64  // Block*BlockSize: where the bytes start in the image
}

// Open reads the volume descriptors at block 16 on.
func Open(r io.ReaderAt) (*Volume, error) {
	v := &Volume{r: r}
	pvd := false
	for blk := int64(16); blk < 16+32; blk++ {
		d := make([]byte, BlockSize)
		if _, err := r.ReadAt(d, blk*BlockSize); err != nil {
			if !pvd {
				return nil, fmt.Errorf("reading volume descriptor %d: %w", blk, err)
			}
			break
		}
		if string(d[1:6]) != "CD001" {
			if !pvd {
				return nil, ErrNotISO
			}
			break
		}
		switch d[0] {
		case 0: // boot record
			if bytes.HasPrefix(d[7:39], []byte("EL TORITO SPECIFICATION")) {
				v.BootCatalog = binary.LittleEndian.Uint32(d[71:])
			}
		case 1:
			pvd = true
			v.ID = strings.TrimRight(string(d[40:72]), " \x00")
			v.SetID = strings.TrimRight(string(d[190:318]), " \x00")
			v.Blocks = binary.LittleEndian.Uint32(d[80:])
			if bs := binary.LittleEndian.Uint16(d[128:]); bs != BlockSize {
				return nil, fmt.Errorf("ISO 9660 logical block size %d, want %d", bs, BlockSize)
			}
			e, _, err := parseRecord(d[156:190])
			if err != nil {
				return nil, fmt.Errorf("root directory record: %w", err)
			}
			v.root = e
		case 255:
			if !pvd {
				return nil, ErrNotISO
			}
			return v, nil
		}
	}
	if !pvd {
		return nil, ErrNotISO
	}
	return v, nil
}

// Root returns the root directory.
func (v *Volume) Root() Entry { return v.root }

// ReadDir lists a directory's entries (without "." and "..").
func (v *Volume) ReadDir(dir Entry) ([]Entry, error) {
	if !dir.Dir {
		return nil, fmt.Errorf("%s is not a directory", dir.Name)
	}
	if dir.Size > 16<<20 {
		return nil, fmt.Errorf("directory %s is %d bytes: not a kiln ISO", dir.Name, dir.Size)
	}
	b := make([]byte, dir.Size)
	if _, err := v.r.ReadAt(b, dir.Offset); err != nil {
		return nil, fmt.Errorf("reading directory %s: %w", dir.Name, err)
	}
	var out []Entry
	for off := 0; off < len(b); {
		if b[off] == 0 { // records never cross a block: the rest of this one is padding
			off = (off/BlockSize + 1) * BlockSize
			continue
		}
		e, n, err := parseRecord(b[off:])
		if err != nil {
			return nil, fmt.Errorf("directory %s at byte %d: %w", dir.Name, off, err)
		}
		off += n
		if e.Name == "\x00" || e.Name == "\x01" {
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// Lookup finds a file or directory by its slash-separated path, comparing
// names case-insensitively ("live/root.sfs" finds LIVE/ROOT.SFS;1).
func (v *Volume) Lookup(path string) (Entry, error) {
	e := v.root
	for _, name := range strings.Split(strings.Trim(path, "/"), "/") {
		if name == "" {
			continue
		}
		ents, err := v.ReadDir(e)
		if err != nil {
			return Entry{}, err
		}
		found := false
		for _, c := range ents {
			if strings.EqualFold(c.Name, name) {
				e, found = c, true
				break
			}
		}
		if !found {
			return Entry{}, fmt.Errorf("%s: %w", path, ErrNotFound)
		}
	}
	return e, nil
}

// ReadFile returns a file's bytes (for small files: configs, catalogs).
func (v *Volume) ReadFile(path string) ([]byte, error) {
	e, err := v.Lookup(path)
	if err != nil {
		return nil, err
	}
	if e.Dir {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	b := make([]byte, e.Size)
	if _, err := v.r.ReadAt(b, e.Offset); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return b, nil
}

func parseRecord(b []byte) (Entry, int, error) {
	if len(b) < 34 || int(b[0]) < 34 || int(b[0]) > len(b) {
		return Entry{}, 0, errors.New("truncated directory record")
	}
	n := int(b[0])
	nameLen := int(b[32])
	if 33+nameLen > n {
		return Entry{}, 0, errors.New("directory record name runs past the record")
	}
	e := Entry{
		Block: binary.LittleEndian.Uint32(b[2:]),
		Size:  binary.LittleEndian.Uint32(b[10:]),
		Dir:   b[25]&2 != 0,
		Name:  string(b[33 : 33+nameLen]),
	}
	e.Offset = int64(e.Block) * BlockSize
	if i := strings.IndexByte(e.Name, ';'); i >= 0 {
		e.Name = e.Name[:i]
	}
	e.Name = strings.TrimSuffix(e.Name, ".")
	return e, n, nil
}

// BootEntry is one El Torito boot catalog entry.
type BootEntry struct {
	Platform byte   // 0 x86 BIOS, 0xEF UEFI
	Bootable bool   // boot indicator 0x88
	Media    byte   // 0 no emulation
	Sectors  uint16 // virtual 512-byte sectors to load
	Block    uint32 // the boot image's first block
}

// Catalog reads the El Torito boot catalog: the initial entry, then one
// entry per section entry. It checks the validation entry's checksum.
func (v *Volume) Catalog() ([]BootEntry, error) {
	if v.BootCatalog == 0 {
		return nil, errors.New("no El Torito boot record")
	}
	b := make([]byte, BlockSize)
	if _, err := v.r.ReadAt(b, int64(v.BootCatalog)*BlockSize); err != nil {
		return nil, fmt.Errorf("reading the boot catalog: %w", err)
	}
	if b[0] != 1 || b[30] != 0x55 || b[31] != 0xAA {
		return nil, errors.New("boot catalog: no validation entry")
	}
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(b[i:])
	}
	if sum != 0 {
		return nil, fmt.Errorf("boot catalog: validation entry checksum leaves %#x, want 0", sum)
	}
	entry := func(e []byte, platform byte) BootEntry {
		return BootEntry{Platform: platform, Bootable: e[0] == 0x88, Media: e[1] & 0x0f,
			Sectors: binary.LittleEndian.Uint16(e[6:]), Block: binary.LittleEndian.Uint32(e[8:])}
	}
	out := []BootEntry{entry(b[32:64], b[1])}
	for off := 64; off+32 <= len(b); {
		h := b[off : off+32]
		if h[0] != 0x90 && h[0] != 0x91 {
			break
		}
		n := int(binary.LittleEndian.Uint16(h[2:]))
		platform := h[1]
		off += 32
		for i := 0; i < n && off+32 <= len(b); i++ {
			out = append(out, entry(b[off:off+32], platform))
			off += 32
		}
		if h[0] == 0x91 {
			break
		}
	}
	return out, nil
}
