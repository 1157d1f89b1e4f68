package flash

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

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

// blkZeroOut is BLKZEROOUT, _IO(0x12, 127): zero a byte range of a block
// device, by the device's own write-zeroes command where it has one.
const blkZeroOut = 0x127f

// ZeroRange zeroes n bytes at off without sending zeros where the device can
// (BLKZEROOUT on a block device, FALLOC_FL_ZERO_RANGE on a file). off and n
// must be multiples of the logical sector size.
func (d *BlockDevice) ZeroRange(off, n int64) error {
	st, err := d.Stat()
	if err != nil {
		return err
	}
	fd := int(d.Fd())
	if st.Mode()&os.ModeDevice == 0 {
		return unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE, off, n)
	}
	r := [2]uint64{uint64(off), uint64(n)}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), blkZeroOut, uintptr(unsafe.Pointer(&r[0]))); errno != 0 {
		return fmt.Errorf("BLKZEROOUT at byte %d (%d bytes): %w", off, n, errno)
	}
	return nil
}
