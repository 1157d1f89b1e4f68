package qemu

import (
	"fmt"
	"io"

	"kiln.dev/kiln/init/gpt"
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

// ReadGPT reads the primary GPT (header and entry CRCs checked) of a disk
// image with 512-byte sectors, using the same reader as stage 1 and PID 1.
func ReadGPT(r io.ReaderAt) ([]GPTPartition, error) {
	// Size 0: only the primary table; callers may pass just the disk's head.
	t, err := gpt.Read(r, 0, 512)
	if err != nil {
		return nil, fmt.Errorf("reading GPT: %w", err)
	}
	parts := make([]GPTPartition, len(t.Entries))
	for i, e := range t.Entries {
		parts[i] = GPTPartition{Index: e.Index, Type: e.Type, UUID: e.UUID, FirstLBA: e.FirstLBA, LastLBA: e.LastLBA, Name: e.Name}
	}
	return parts, nil
}
