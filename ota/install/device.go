package install

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/init/blockdev"
	"kiln.dev/kiln/init/gpt"
	"kiln.dev/kiln/partitions"
)

// FileDevice is a block device node or a regular file used as one, size
// bytes long.
type FileDevice struct {
	*os.File
	size int64
}

// OpenDevice opens path for reading and writing as a device of size bytes
// (0: the file's current size, or the block device's size).
func OpenDevice(path string, size int64) (*FileDevice, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	if size == 0 {
		end, err := f.Seek(0, 2)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("sizing %s: %w", path, err)
		}
		size = end
	}
	return &FileDevice{File: f, size: size}, nil
}

// Size implements Device.
func (d *FileDevice) Size() int64 { return d.size }

// DropCache drops the device's cached pages, so the read-back after Sync
// reads the medium (BLKFLSBUF on a block device, fadvise on both).
func (d *FileDevice) DropCache() error {
	fd := int(d.Fd())
	if st, err := d.Stat(); err == nil && st.Mode()&os.ModeDevice != 0 {
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKFLSBUF, 0); errno != 0 {
			return fmt.Errorf("BLKFLSBUF: %w", errno)
		}
	}
	return unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
}

// PartitionTargets returns a Target finder for the appliance whose running
// root partition has PARTUUID runningUUID: a slot's root is the partition
// with that slot's label and the root type on the same disk (found through
// sysfs like PID 1 finds its disk), never the running root itself.
func PartitionTargets(sys blockdev.Sys, runningUUID string) func(partitions.Slot) (Target, error) {
	return func(s partitions.Slot) (Target, error) {
		if runningUUID == "" {
			return Target{}, fmt.Errorf("the kernel command line has no root=PARTUUID=, so the boot disk is unknown")
		}
		cur, err := sys.FindPartition(func(e gpt.Entry) bool { return strings.EqualFold(e.UUID, runningUUID) })
		if err != nil {
			return Target{}, fmt.Errorf("finding the running root PARTUUID=%s: %w", runningUUID, err)
		}
		want, _ := partitions.ByRole(s.Role())
		f, err := sys.FindOnDisk(cur.Disk, func(e gpt.Entry) bool {
			return e.Name == want.Label && strings.EqualFold(e.Type, partitions.TypeRootX8664)
		})
		if err != nil {
			return Target{}, fmt.Errorf("finding partition %s on %s: %w", want.Label, cur.Disk, err)
		}
		if strings.EqualFold(f.Entry.UUID, runningUUID) {
			return Target{}, fmt.Errorf("partition %s is the running root: refusing to write it", want.Label)
		}
		node, err := sys.EnsureNode(f.Part)
		if err != nil {
			return Target{}, err
		}
		size := int64(f.Entry.Sectors()) * int64(sys.SectorSize(cur.Disk))
		return Target{
			RootUUID: f.Entry.UUID,
			Open:     func() (Device, error) { return OpenDevice(node, size) },
		}, nil
	}
}
