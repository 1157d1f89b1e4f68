// Package disk writes kiln's partition table: a GPT (via go-diskfs) laid out by
// package partitions, with the disk GUID and partition UUIDs derived from the
// appliance ID so that the same inputs give the same bytes.
package disk

import (
	"fmt"
	"os"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"kiln.dev/kiln/partitions"
)

// Table returns the GPT of an image for an appliance ID.
func Table(applianceID string) *gpt.Table {
	t := &gpt.Table{
		LogicalSectorSize:  partitions.SectorSize,
		PhysicalSectorSize: partitions.SectorSize,
		ProtectiveMBR:      true,
		GUID:               partitions.DiskGUID(applianceID),
	}
	for _, p := range partitions.Layout() {
		t.Partitions = append(t.Partitions, &gpt.Partition{
			Index: p.Index,
			Start: p.Start / partitions.SectorSize,
			End:   p.End()/partitions.SectorSize - 1,
			Size:  p.Size,
			Type:  gpt.Type(p.Type),
			Name:  p.Label,
			GUID:  partitions.PartUUID(applianceID, p.Role),
		})
	}
	return t
}

// Create creates (or truncates) the raw image file at path with the layout's size
// and writes the partition table. Partition contents read as zeros.
func Create(path, applianceID string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating image: %w", err)
	}
	if err := f.Truncate(int64(partitions.ImageSize())); err != nil {
		f.Close()
		return nil, fmt.Errorf("sizing image: %w", err)
	}
	d, err := diskfs.OpenBackend(file.New(f, false), diskfs.WithSectorSize(diskfs.SectorSize512))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening image for partitioning: %w", err)
	}
	if err := d.Partition(Table(applianceID)); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing partition table: %w", err)
	}
	return f, nil
}
