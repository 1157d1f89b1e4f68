package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrIncompatible means a disk's data partition cannot be carried over to a
// new image because their partition tables differ in more than the data
// partition's size.
var ErrIncompatible = errors.New("partition tables are not compatible")

// dataIndex is the GPT index of kiln's data partition (see package partitions).
const dataIndex = 4

// headBytes is the part of a disk before the first partition that holds the
// protective MBR and the primary GPT.
const headBytes = 1 << 20

// CarryData makes newDisk (a fresh overlay on a newer image, as large as
// oldDisk) keep oldDisk's data partition: it copies the partition table (in
// which the data partition may have grown) and everything from the data
// partition's start to the end of the disk (its contents and the backup GPT)
// from oldDisk. The ESP and both roots stay the new image's. It fails with
// ErrIncompatible unless both tables agree on every partition except the data
// partition's end. `kiln vm run` uses it so the VM's data survives rebuilds.
func CarryData(ctx context.Context, oldDisk, newDisk string) error {
	oldInfo, err := Inspect(ctx, oldDisk)
	if err != nil {
		return err
	}
	newInfo, err := Inspect(ctx, newDisk)
	if err != nil {
		return err
	}
	if oldInfo.VirtualSize != newInfo.VirtualSize {
		return fmt.Errorf("%w: disk sizes differ (%d and %d bytes)", ErrIncompatible, oldInfo.VirtualSize, newInfo.VirtualSize)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(newDisk), ".carry-")
	if err != nil {
		return fmt.Errorf("carrying data over: %w", err)
	}
	defer os.RemoveAll(tmp)
	readTable := func(disk, format, name string) ([]GPTPartition, error) {
		p := filepath.Join(tmp, name)
		if err := readRange(ctx, disk, format, 0, headBytes, p); err != nil {
			return nil, err
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		parts, err := ReadGPT(f)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrIncompatible, disk, err)
		}
		return parts, nil
	}
	oldParts, err := readTable(oldDisk, oldInfo.Format, "old-head")
	if err != nil {
		return err
	}
	newParts, err := readTable(newDisk, newInfo.Format, "new-head")
	if err != nil {
		return err
	}
	if err := compatible(oldParts, newParts); err != nil {
		return err
	}
	var data GPTPartition
	for _, p := range oldParts {
		if p.Index == dataIndex {
			data = p
		}
	}
	tail := filepath.Join(tmp, "tail")
	if err := readRange(ctx, oldDisk, oldInfo.Format, data.Offset(), oldInfo.VirtualSize-data.Offset(), tail); err != nil {
		return err
	}
	if err := writeRange(ctx, filepath.Join(tmp, "old-head"), newDisk, newInfo.Format, 0, headBytes); err != nil {
		return err
	}
	return writeRange(ctx, tail, newDisk, newInfo.Format, data.Offset(), oldInfo.VirtualSize-data.Offset())
}

// compatible checks that two partition tables differ at most in the data
// partition's end.
func compatible(oldParts, newParts []GPTPartition) error {
	if len(oldParts) != len(newParts) {
		return fmt.Errorf("%w: %d and %d partitions", ErrIncompatible, len(oldParts), len(newParts))
	}
	found := false
	for i := range oldParts {
		o, n := oldParts[i], newParts[i]
		if o.Index == dataIndex {
			found = true
			if o.LastLBA < n.LastLBA {
				return fmt.Errorf("%w: the old data partition is smaller than the new image's", ErrIncompatible)
			}
			o.LastLBA = n.LastLBA
		}
		if o != n {
			return fmt.Errorf("%w: partition %d differs: %+v and %+v", ErrIncompatible, o.Index, oldParts[i], n)
		}
		if o.Offset() < headBytes {
			return fmt.Errorf("%w: partition %d starts inside the first MiB", ErrIncompatible, o.Index)
		}
	}
	if !found {
		return fmt.Errorf("%w: no data partition (index %d)", ErrIncompatible, dataIndex)
	}
	return nil
}

// rangeOpts addresses size bytes at offset of a disk image as a raw image.
func rangeOpts(disk, format string, offset, size int64) string {
	return fmt.Sprintf("driver=raw,offset=%d,size=%d,file.driver=%s,file.file.driver=file,file.file.filename=%s",
		offset, size, format, optEscape(disk))
}

// readRange copies a byte range of disk into the raw file dst.
func readRange(ctx context.Context, disk, format string, offset, size int64, dst string) error {
	if _, err := qemuImg(ctx, "convert", "-O", "raw", "--image-opts", rangeOpts(disk, format, offset, size), dst); err != nil {
		return fmt.Errorf("reading bytes %d+%d of %s: %w", offset, size, disk, err)
	}
	return nil
}

// writeRange writes the raw file src over a byte range of disk.
func writeRange(ctx context.Context, src, disk, format string, offset, size int64) error {
	if _, err := qemuImg(ctx, "convert", "-n", "-f", "raw", "--target-image-opts", src, rangeOpts(disk, format, offset, size)); err != nil {
		return fmt.Errorf("writing bytes %d+%d of %s: %w", offset, size, disk, err)
	}
	return nil
}
