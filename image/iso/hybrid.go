package iso

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"strings"
	"unicode/utf16"
)

// GPT constants (UEFI spec 2.10, 5.3).
const (
	gptEntries    = 128
	gptEntrySize  = 128
	gptTableBytes = gptEntries * gptEntrySize // 32 sectors
	typeESP       = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
)

// writeHybrid writes the protective MBR (partition table and signature only)
// and the primary and backup GPT with one partition, the ESP image. The
// volume descriptors at byte 32768 lie outside any partition, as in
// xorriso's GPT hybrids; first usable LBA is 64, after the system area.
func writeHybrid(w *blockWriter, lay *Layout, h *Hybrid, esp Extent) error {
	sectors := uint64(lay.Size()) / sector
	first := uint64(esp.Block) * BlockSize / sector
	last := first + uint64((esp.Size+sector-1)/sector) - 1
	disk, err := guidBytes(h.DiskGUID)
	if err != nil {
		return fmt.Errorf("iso: hybrid disk GUID: %w", err)
	}
	part, err := guidBytes(h.ESPGUID)
	if err != nil {
		return fmt.Errorf("iso: hybrid ESP GUID: %w", err)
	}
	typ, _ := guidBytes(typeESP)
	entries := make([]byte, gptTableBytes)
	e := entries[:gptEntrySize]
	copy(e[0:16], typ)
	copy(e[16:32], part)
	binary.LittleEndian.PutUint64(e[32:], first)
	binary.LittleEndian.PutUint64(e[40:], last)
	name := utf16.Encode([]rune(h.ESPName))
	if len(name) > 36 {
		return fmt.Errorf("iso: hybrid ESP name %q is longer than 36 characters", h.ESPName)
	}
	for i, c := range name {
		binary.LittleEndian.PutUint16(e[56+2*i:], c)
	}
	entriesCRC := crc32.ChecksumIEEE(entries)
	backupEntries := sectors - 1 - gptTableBytes/sector
	header := func(current, backup, table uint64) []byte {
		b := make([]byte, sector)
		copy(b, "EFI PART")
		binary.LittleEndian.PutUint32(b[8:], 0x00010000)
		binary.LittleEndian.PutUint32(b[12:], 92)
		binary.LittleEndian.PutUint64(b[24:], current)
		binary.LittleEndian.PutUint64(b[32:], backup)
		binary.LittleEndian.PutUint64(b[40:], 64)              // first usable: after the system area
		binary.LittleEndian.PutUint64(b[48:], backupEntries-1) // last usable
		copy(b[56:72], disk)
		binary.LittleEndian.PutUint64(b[72:], table)
		binary.LittleEndian.PutUint32(b[80:], gptEntries)
		binary.LittleEndian.PutUint32(b[84:], gptEntrySize)
		binary.LittleEndian.PutUint32(b[88:], entriesCRC)
		binary.LittleEndian.PutUint32(b[16:], crc32.ChecksumIEEE(b[:92]))
		return b
	}
	if last >= backupEntries {
		return fmt.Errorf("iso: ESP image ends at sector %d, inside the backup GPT at %d", last, backupEntries)
	}
	mbr := make([]byte, sector)
	p := mbr[446:462]
	p[1], p[2], p[3] = 0x00, 0x02, 0x00 // CHS of LBA 1
	p[4] = 0xEE
	p[5], p[6], p[7] = 0xFF, 0xFF, 0xFF
	binary.LittleEndian.PutUint32(p[8:], 1)
	binary.LittleEndian.PutUint32(p[12:], uint32(min(sectors-1, 0xFFFFFFFF)))
	mbr[510], mbr[511] = 0x55, 0xAA
	w.writeAt(0, mbr)
	w.writeAt(1*sector, header(1, sectors-1, 2))
	w.writeAt(2*sector, entries)
	w.writeAt(int64(backupEntries)*sector, entries)
	w.writeAt(int64(sectors-1)*sector, header(sectors-1, 1, backupEntries))
	return nil
}

// guidBytes encodes a GUID string in GPT's mixed-endian layout.
func guidBytes(s string) ([]byte, error) {
	h, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(h) != 16 || len(s) != 36 {
		return nil, fmt.Errorf("%q is not a GUID (8-4-4-4-12 hex digits)", s)
	}
	b := make([]byte, 16)
	b[0], b[1], b[2], b[3] = h[3], h[2], h[1], h[0]
	b[4], b[5] = h[5], h[4]
	b[6], b[7] = h[7], h[6]
	copy(b[8:], h[8:])
	return b, nil
}
