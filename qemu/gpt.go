package qemu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
)

// GPTPartition is one used entry of a GUID partition table, as tests need it to
// find a partition in a disk image the guest may have changed (the data
// partition grows on first boot, so the build-time layout is not enough).
type GPTPartition struct {
	Index    int    // 1-based
	Type     string // type GUID, upper case
	UUID     string // unique partition GUID (PARTUUID), upper case
	FirstLBA uint64
	LastLBA  uint64 // inclusive
	Name     string
}

// Offset is the partition's first byte.
func (p GPTPartition) Offset() int64 { return int64(p.FirstLBA) * 512 }

// Size is the partition's size in bytes.
func (p GPTPartition) Size() int64 { return int64(p.LastLBA-p.FirstLBA+1) * 512 }

// ReadGPT reads the primary GPT of a disk image with 512-byte sectors.
func ReadGPT(r io.ReaderAt) ([]GPTPartition, error) {
	hdr := make([]byte, 92)
	if _, err := r.ReadAt(hdr, 512); err != nil {
		return nil, fmt.Errorf("reading GPT header: %w", err)
	}
	if !bytes.Equal(hdr[:8], []byte("EFI PART")) {
		return nil, errors.New("reading GPT header: no GPT signature at LBA 1")
	}
	le := binary.LittleEndian
	entriesLBA, count, size := le.Uint64(hdr[72:]), le.Uint32(hdr[80:]), le.Uint32(hdr[84:])
	if size < 128 || count > 1024 {
		return nil, fmt.Errorf("reading GPT header: implausible %d entries of %d bytes", count, size)
	}
	table := make([]byte, int(count)*int(size))
	if _, err := r.ReadAt(table, int64(entriesLBA)*512); err != nil {
		return nil, fmt.Errorf("reading GPT entries: %w", err)
	}
	var parts []GPTPartition
	for i := 0; i < int(count); i++ {
		e := table[i*int(size) : (i+1)*int(size)]
		if isZero(e[:16]) {
			continue
		}
		name := make([]uint16, 36)
		for j := range name {
			name[j] = le.Uint16(e[56+2*j:])
		}
		parts = append(parts, GPTPartition{
			Index:    i + 1,
			Type:     guidString(e[0:16]),
			UUID:     guidString(e[16:32]),
			FirstLBA: le.Uint64(e[32:]),
			LastLBA:  le.Uint64(e[40:]),
			Name:     strings.TrimRight(string(utf16.Decode(name)), "\x00"),
		})
	}
	return parts, nil
}

// guidString formats a GUID stored in GPT's mixed-endian layout.
func guidString(b []byte) string {
	le := binary.LittleEndian
	return strings.ToUpper(fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		le.Uint32(b[0:4]), le.Uint16(b[4:6]), le.Uint16(b[6:8]), b[8:10], b[10:16]))
}
