package flash

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// BlockDevice is an open disk (or image file) to write.
type BlockDevice struct {
	*os.File
}

// Open opens a device for writing with O_EXCL: on a block device the kernel then
// refuses it while a filesystem on it is mounted or another program holds it
// exclusively, a second guard behind Check.
func Open(path string) (*BlockDevice, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		return nil, fmt.Errorf("opening %s: the kernel says it is busy (mounted or held by another program): %w", path, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return &BlockDevice{f}, nil
}

// Size returns the device's size in bytes.
func (d *BlockDevice) Size() (int64, error) {
	n, err := d.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("sizing %s: %w", d.Name(), err)
	}
	return n, nil
}

// DropCache drops the device's cached pages: BLKFLSBUF for a block device, a
// DONTNEED advice for a file. The data must have been fsynced.
func (d *BlockDevice) DropCache() error {
	fd := int(d.Fd())
	st, err := d.Stat()
	if err != nil {
		return err
	}
	if st.Mode()&os.ModeDevice != 0 {
		if err := unix.IoctlSetInt(fd, unix.BLKFLSBUF, 0); err != nil {
			return fmt.Errorf("BLKFLSBUF: %w", err)
		}
	}
	return unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
}

// RereadPartitions asks the kernel to read the new partition table, so the host
// sees the image's partitions. Devices that do not scan partitions (loop devices
// without partscan) and files return nil.
func (d *BlockDevice) RereadPartitions() error {
	st, err := d.Stat()
	if err != nil || st.Mode()&os.ModeDevice == 0 {
		return err
	}
	if err := unix.IoctlSetInt(int(d.Fd()), unix.BLKRRPART, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("re-reading the partition table of %s: %w", d.Name(), err)
	}
	return nil
}
