package gpt

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// Growth describes how a partition grows to the end of a disk.
type Growth struct {
	Index         int    // partition grown
	OldLastLBA    uint64 // before
	NewLastLBA    uint64 // after (inclusive)
	AlternateLBA  uint64 // new backup header location: the disk's last sector
	LastUsableLBA uint64
}

// PlanGrow computes how partition index grows to fill a disk of diskBytes,
// keeping its end aligned to alignBytes (1 MiB is customary). It returns
// ok=false when the partition already ends within alignBytes of the end and the
// backup table is already at the end of the disk. The partition must be the
// last one on the disk.
func (t *Table) PlanGrow(index int, diskBytes int64, alignBytes int64) (g Growth, ok bool, err error) {
	p, found := t.ByIndex(index)
	if !found {
		return Growth{}, false, fmt.Errorf("growing partition %d: no such partition", index)
	}
	for _, e := range t.Entries {
		if e.Index != index && e.FirstLBA > p.FirstLBA {
			return Growth{}, false, fmt.Errorf("growing partition %d: partition %d comes after it", index, e.Index)
		}
	}
	ss := uint64(t.SectorSize)
	sectors := uint64(diskBytes) / ss
	entrySectors := (uint64(len(t.entries)) + ss - 1) / ss
	if sectors < 2+2*entrySectors+1 {
		return Growth{}, false, fmt.Errorf("growing partition %d: disk of %d bytes is too small", index, diskBytes)
	}
	alt := sectors - 1
	lastUsable := alt - entrySectors - 1
	if lastUsable < p.LastLBA {
		return Growth{}, false, fmt.Errorf("growing partition %d: disk of %d bytes ends before the partition (LBA %d)", index, diskBytes, p.LastLBA)
	}
	align := uint64(alignBytes) / ss
	if align == 0 {
		align = 1
	}
	newLast := (lastUsable+1)/align*align - 1
	if newLast < p.LastLBA {
		newLast = p.LastLBA
	}
	g = Growth{Index: index, OldLastLBA: p.LastLBA, NewLastLBA: newLast, AlternateLBA: alt, LastUsableLBA: lastUsable}
	if newLast == p.LastLBA && t.AlternateLBA == alt && t.LastUsableLBA == lastUsable {
		return g, false, nil
	}
	return g, true, nil
}

// Apply rewrites the disk's protective MBR, backup and primary tables for g,
// backup first so that an interruption leaves the old primary intact, and
// updates t. w must be the whole disk.
func (t *Table) Apply(w io.WriterAt, g Growth) error {
	ss := int64(t.SectorSize)
	i := g.Index - 1
	e := t.entries[i*t.esize : (i+1)*t.esize]
	binary.LittleEndian.PutUint64(e[40:48], g.NewLastLBA)
	hdr := t.header
	oldAlt := t.AlternateLBA
	binary.LittleEndian.PutUint64(hdr[32:40], g.AlternateLBA)
	binary.LittleEndian.PutUint64(hdr[48:56], g.LastUsableLBA)
	binary.LittleEndian.PutUint32(hdr[88:92], crc32.ChecksumIEEE(t.entries))
	entrySectors := (int64(len(t.entries)) + ss - 1) / ss
	backupEntries := int64(g.AlternateLBA) - entrySectors

	backup := make([]byte, len(hdr))
	copy(backup, hdr)
	binary.LittleEndian.PutUint64(backup[24:32], g.AlternateLBA)
	binary.LittleEndian.PutUint64(backup[32:40], 1)
	binary.LittleEndian.PutUint64(backup[72:80], uint64(backupEntries))
	sealHeader(backup)
	sealHeader(hdr)

	pad := make([]byte, entrySectors*ss)
	copy(pad, t.entries)
	if _, err := w.WriteAt(pad, backupEntries*ss); err != nil {
		return fmt.Errorf("writing backup GPT entries: %w", err)
	}
	if _, err := w.WriteAt(backup, int64(g.AlternateLBA)*ss); err != nil {
		return fmt.Errorf("writing backup GPT header: %w", err)
	}
	if s, ok := w.(interface{ Sync() error }); ok {
		if err := s.Sync(); err != nil {
			return fmt.Errorf("syncing backup GPT: %w", err)
		}
	}
	if _, err := w.WriteAt(pad, int64(binary.LittleEndian.Uint64(hdr[72:80]))*ss); err != nil {
		return fmt.Errorf("writing primary GPT entries: %w", err)
	}
	if _, err := w.WriteAt(hdr, ss); err != nil {
		return fmt.Errorf("writing primary GPT header: %w", err)
	}
	// The old backup header now lies inside the grown partition: wipe it so
	// nothing mistakes it for a table later.
	if oldAlt != g.AlternateLBA && oldAlt > g.OldLastLBA && oldAlt <= g.NewLastLBA {
		if _, err := w.WriteAt(make([]byte, ss), int64(oldAlt)*ss); err != nil {
			return fmt.Errorf("wiping old backup GPT header: %w", err)
		}
	}
	if err := t.fixProtectiveMBR(w, g.AlternateLBA+1); err != nil {
		return err
	}
	if s, ok := w.(interface{ Sync() error }); ok {
		if err := s.Sync(); err != nil {
			return fmt.Errorf("syncing primary GPT: %w", err)
		}
	}
	t.AlternateLBA = g.AlternateLBA
	t.LastUsableLBA = g.LastUsableLBA
	for k := range t.Entries {
		if t.Entries[k].Index == g.Index {
			t.Entries[k].LastLBA = g.NewLastLBA
		}
	}
	return nil
}

// fixProtectiveMBR makes a protective MBR's 0xEE partition cover the disk.
// Hybrid MBRs (more than the one protective entry) are left alone.
func (t *Table) fixProtectiveMBR(w io.WriterAt, sectors uint64) error {
	r, ok := w.(io.ReaderAt)
	if !ok {
		return nil
	}
	mbr := make([]byte, 512)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return fmt.Errorf("reading protective MBR: %w", err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xAA || mbr[446+4] != 0xEE {
		return nil
	}
	for k := 1; k < 4; k++ {
		if mbr[446+16*k+4] != 0 {
			return nil
		}
	}
	size := sectors - 1
	if size > 0xFFFFFFFF {
		size = 0xFFFFFFFF
	}
	binary.LittleEndian.PutUint32(mbr[446+12:], uint32(size))
	if _, err := w.WriteAt(mbr[446:462], 446); err != nil {
		return fmt.Errorf("writing protective MBR: %w", err)
	}
	return nil
}

func sealHeader(h []byte) {
	hsize := binary.LittleEndian.Uint32(h[12:16])
	binary.LittleEndian.PutUint32(h[16:20], headerCRC(h[:hsize]))
}
