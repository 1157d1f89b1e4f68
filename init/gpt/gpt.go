// Package gpt reads GUID partition tables and grows the last partition to the
// end of its disk, rewriting the primary and backup tables. It is what stage 1
// uses to find the root by PARTUUID and what PID 1 uses to find and grow the
// data partition; it depends on the standard library only, to keep stage 1 small.
package gpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// ErrNoGPT is returned when neither the primary nor the backup table is valid.
var ErrNoGPT = errors.New("no valid GPT")

const signature = "EFI PART"

// Entry is one used partition entry.
type Entry struct {
	Index    int    // 1-based slot in the entry array (the Linux partition number)
	Type     string // type GUID, upper case
	UUID     string // unique partition GUID (PARTUUID), upper case
	FirstLBA uint64
	LastLBA  uint64 // inclusive
	Attrs    uint64
	Name     string
}

// Sectors returns the number of sectors in the partition.
func (e Entry) Sectors() uint64 { return e.LastLBA - e.FirstLBA + 1 }

// Table is a parsed GPT plus the raw bytes needed to rewrite it faithfully.
type Table struct {
	SectorSize     int
	DiskGUID       string
	FirstUsableLBA uint64
	LastUsableLBA  uint64
	AlternateLBA   uint64 // where the backup header is (the disk's last sector when intact)
	Entries        []Entry
	// FromBackup is set when the primary table was damaged and the backup was read.
	FromBackup bool

	header  []byte // one sector, primary form
	entries []byte // the whole entry array
	esize   int    // bytes per entry
}

// Read parses the GPT of a disk of size bytes; sectorSize is its logical sector size.
func Read(r io.ReaderAt, size int64, sectorSize int) (*Table, error) {
	t, perr := readAt(r, 1, sectorSize)
	if perr == nil {
		return t, nil
	}
	last := uint64(size/int64(sectorSize)) - 1
	if size >= int64(sectorSize)*3 {
		if t, err := readAt(r, last, sectorSize); err == nil {
			t.FromBackup = true
			return t, nil
		}
	}
	return nil, perr
}

func readAt(r io.ReaderAt, lba uint64, ss int) (*Table, error) {
	hdr := make([]byte, ss)
	if _, err := r.ReadAt(hdr, int64(lba)*int64(ss)); err != nil {
		return nil, fmt.Errorf("reading GPT header at LBA %d: %w", lba, err)
	}
	if string(hdr[0:8]) != signature {
		return nil, fmt.Errorf("%w: no signature at LBA %d", ErrNoGPT, lba)
	}
	hsize := binary.LittleEndian.Uint32(hdr[12:16])
	if hsize < 92 || int(hsize) > ss {
		return nil, fmt.Errorf("%w: header size %d at LBA %d", ErrNoGPT, hsize, lba)
	}
	want := binary.LittleEndian.Uint32(hdr[16:20])
	if got := headerCRC(hdr[:hsize]); got != want {
		return nil, fmt.Errorf("%w: header CRC %08x, want %08x at LBA %d", ErrNoGPT, got, want, lba)
	}
	if my := binary.LittleEndian.Uint64(hdr[24:32]); my != lba {
		return nil, fmt.Errorf("%w: header at LBA %d says it is at %d", ErrNoGPT, lba, my)
	}
	elba := binary.LittleEndian.Uint64(hdr[72:80])
	n := binary.LittleEndian.Uint32(hdr[80:84])
	esize := binary.LittleEndian.Uint32(hdr[84:88])
	if esize < 128 || esize > 4096 || esize%8 != 0 || n == 0 || n > 16384 {
		return nil, fmt.Errorf("%w: %d entries of %d bytes", ErrNoGPT, n, esize)
	}
	ents := make([]byte, int(n)*int(esize))
	if _, err := r.ReadAt(ents, int64(elba)*int64(ss)); err != nil {
		return nil, fmt.Errorf("reading GPT entries at LBA %d: %w", elba, err)
	}
	if got, want := crc32.ChecksumIEEE(ents), binary.LittleEndian.Uint32(hdr[88:92]); got != want {
		return nil, fmt.Errorf("%w: entry array CRC %08x, want %08x", ErrNoGPT, got, want)
	}
	t := &Table{
		SectorSize:     ss,
		DiskGUID:       GUIDString(hdr[56:72]),
		FirstUsableLBA: binary.LittleEndian.Uint64(hdr[40:48]),
		LastUsableLBA:  binary.LittleEndian.Uint64(hdr[48:56]),
		AlternateLBA:   binary.LittleEndian.Uint64(hdr[32:40]),
		header:         hdr,
		entries:        ents,
		esize:          int(esize),
	}
	if lba != 1 { // keep the header in primary form for rewriting
		t.AlternateLBA = lba
		binary.LittleEndian.PutUint64(hdr[24:32], 1)
		binary.LittleEndian.PutUint64(hdr[32:40], lba)
		binary.LittleEndian.PutUint64(hdr[72:80], 2)
	}
	for i := 0; i < int(n); i++ {
		e := ents[i*int(esize) : (i+1)*int(esize)]
		if allZero(e[0:16]) {
			continue
		}
		t.Entries = append(t.Entries, Entry{
			Index:    i + 1,
			Type:     GUIDString(e[0:16]),
			UUID:     GUIDString(e[16:32]),
			FirstLBA: binary.LittleEndian.Uint64(e[32:40]),
			LastLBA:  binary.LittleEndian.Uint64(e[40:48]),
			Attrs:    binary.LittleEndian.Uint64(e[48:56]),
			Name:     decodeName(e[56:128]),
		})
	}
	return t, nil
}

// ByUUID returns the entry whose unique GUID is uuid (any case).
func (t *Table) ByUUID(uuid string) (Entry, bool) {
	return t.find(func(e Entry) bool { return strings.EqualFold(e.UUID, uuid) })
}

// ByName returns the first entry with the GPT partition name.
func (t *Table) ByName(name string) (Entry, bool) {
	return t.find(func(e Entry) bool { return e.Name == name })
}

// ByIndex returns the entry with the 1-based index.
func (t *Table) ByIndex(i int) (Entry, bool) {
	return t.find(func(e Entry) bool { return e.Index == i })
}

func (t *Table) find(f func(Entry) bool) (Entry, bool) {
	for _, e := range t.Entries {
		if f(e) {
			return e, true
		}
	}
	return Entry{}, false
}

func headerCRC(h []byte) uint32 {
	c := bytes.Clone(h)
	clear(c[16:20])
	return crc32.ChecksumIEEE(c)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func decodeName(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// GUIDString formats a 16-byte on-disk GUID (mixed endian) as upper-case text.
func GUIDString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X",
		binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}
