// Package blockdev finds disks and partitions through sysfs (there is no udev):
// it lists whole disks, reads their GPTs, maps a GPT entry to its partition's
// device node and a partition back to its disk. Stage 1 and PID 1 both use it,
// so it depends on the standard library, x/sys/unix and init/gpt only.
package blockdev

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/init/gpt"
)

// Sys names the directories a Finder reads; tests point them into a temp dir.
type Sys struct {
	// Block is the sysfs block class, /sys/class/block.
	Block string
	// Dev holds device nodes, /dev.
	Dev string
}

// Default is the running system.
var Default = Sys{Block: "/sys/class/block", Dev: "/dev"}

// Disk is a whole block device and its partitions' kernel names.
type Disk struct {
	Name       string   // e.g. "vda", "nvme0n1"
	Partitions []string // e.g. "vda1", "nvme0n1p1"
}

// Disks lists whole disks (not partitions, ram or zram devices), sorted by name.
func (s Sys) Disks() ([]Disk, error) {
	ents, err := os.ReadDir(s.Block)
	if err != nil {
		return nil, fmt.Errorf("listing block devices: %w", err)
	}
	var disks []Disk
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.Block, n, "partition")); err == nil {
			continue
		}
		d := Disk{Name: n}
		if subs, err := os.ReadDir(filepath.Join(s.Block, n)); err == nil {
			for _, sub := range subs {
				if _, err := os.Stat(filepath.Join(s.Block, n, sub.Name(), "partition")); err == nil {
					d.Partitions = append(d.Partitions, sub.Name())
				}
			}
		}
		sort.Strings(d.Partitions)
		disks = append(disks, d)
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Name < disks[j].Name })
	return disks, nil
}

// Describe summarizes disks for an operator: "vda(vda1,vda2) sr0".
func Describe(disks []Disk) string {
	if len(disks) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, d := range disks {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(d.Name)
		if len(d.Partitions) > 0 {
			b.WriteString("(" + strings.Join(d.Partitions, ",") + ")")
		}
	}
	return b.String()
}

// ReadGPT reads the partition table of a whole disk.
func (s Sys) ReadGPT(disk string) (*gpt.Table, error) {
	f, err := os.Open(s.node(disk))
	if err != nil {
		return nil, fmt.Errorf("opening disk %s: %w", disk, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("sizing disk %s: %w", disk, err)
	}
	t, err := gpt.Read(f, size, s.SectorSize(disk))
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", disk, err)
	}
	return t, nil
}

// SectorSize returns a disk's logical block size (512 when unknown).
func (s Sys) SectorSize(disk string) int {
	b, err := os.ReadFile(filepath.Join(s.Block, disk, "queue", "logical_block_size"))
	if err != nil {
		return 512
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 512 {
		return 512
	}
	return n
}

// ErrNotFound is returned when no disk holds the partition sought.
var ErrNotFound = errors.New("partition not found")

// Found is a GPT partition located on a disk.
type Found struct {
	Disk  string    // kernel name of the disk
	Part  string    // kernel name of the partition, "" if the kernel has not created it yet
	Entry gpt.Entry // the GPT entry
	Table *gpt.Table
}

// Node returns the partition's device node path.
func (s Sys) Node(name string) string { return s.node(name) }

func (s Sys) node(name string) string { return filepath.Join(s.Dev, name) }

// FindPartition searches every disk's GPT for the first entry match accepts.
// Disks without a readable GPT are skipped. It returns ErrNotFound, wrapped with
// the disks seen, when no disk has such a partition or its device is not there yet.
func (s Sys) FindPartition(match func(gpt.Entry) bool) (Found, error) {
	disks, err := s.Disks()
	if err != nil {
		return Found{}, err
	}
	for _, d := range disks {
		t, err := s.ReadGPT(d.Name)
		if err != nil {
			continue
		}
		for _, e := range t.Entries {
			if !match(e) {
				continue
			}
			part, err := s.PartitionName(d.Name, e.Index)
			if err != nil {
				return Found{Disk: d.Name, Entry: e, Table: t}, fmt.Errorf("disk %s has the partition as entry %d but the kernel shows no such partition: %w", d.Name, e.Index, ErrNotFound)
			}
			return Found{Disk: d.Name, Part: part, Entry: e, Table: t}, nil
		}
	}
	return Found{}, fmt.Errorf("disks seen: %s: %w", Describe(disks), ErrNotFound)
}

// FindOnDisk looks for an entry on one disk.
func (s Sys) FindOnDisk(disk string, match func(gpt.Entry) bool) (Found, error) {
	t, err := s.ReadGPT(disk)
	if err != nil {
		return Found{}, err
	}
	for _, e := range t.Entries {
		if match(e) {
			part, err := s.PartitionName(disk, e.Index)
			if err != nil {
				return Found{Disk: disk, Entry: e, Table: t}, err
			}
			return Found{Disk: disk, Part: part, Entry: e, Table: t}, nil
		}
	}
	return Found{Disk: disk, Table: t}, fmt.Errorf("disk %s: %w", disk, ErrNotFound)
}

// PartitionName returns the kernel name of partition number index of disk.
func (s Sys) PartitionName(disk string, index int) (string, error) {
	subs, err := os.ReadDir(filepath.Join(s.Block, disk))
	if err != nil {
		return "", fmt.Errorf("listing partitions of %s: %w", disk, err)
	}
	for _, sub := range subs {
		b, err := os.ReadFile(filepath.Join(s.Block, disk, sub.Name(), "partition"))
		if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(index) {
			return sub.Name(), nil
		}
	}
	return "", fmt.Errorf("disk %s has no partition %d: %w", disk, index, ErrNotFound)
}

// DiskOf returns the disk a partition belongs to (the parent sysfs directory).
func (s Sys) DiskOf(part string) (string, error) {
	p, err := filepath.EvalSymlinks(filepath.Join(s.Block, part))
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", part, err)
	}
	if _, err := os.Stat(filepath.Join(p, "partition")); err != nil {
		return "", fmt.Errorf("%s is not a partition", part)
	}
	return filepath.Base(filepath.Dir(p)), nil
}

// NameOfDev returns the kernel name of the block device with a dev_t, using
// /sys/dev/block style lookups through the block class directory.
func (s Sys) NameOfDev(major, minor uint32) (string, error) {
	want := fmt.Sprintf("%d:%d", major, minor)
	ents, err := os.ReadDir(s.Block)
	if err != nil {
		return "", fmt.Errorf("listing block devices: %w", err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(s.Block, e.Name(), "dev"))
		if err == nil && strings.TrimSpace(string(b)) == want {
			return e.Name(), nil
		}
	}
	return "", fmt.Errorf("no block device %s: %w", want, ErrNotFound)
}

// EnsureNode creates the device node of a block device from its sysfs dev
// file if devtmpfs has not (yet) made it.
func (s Sys) EnsureNode(name string) (string, error) {
	n := s.node(name)
	if _, err := os.Stat(n); err == nil {
		return n, nil
	}
	b, err := os.ReadFile(filepath.Join(s.Block, name, "dev"))
	if err != nil {
		return "", fmt.Errorf("reading %s device number: %w", name, err)
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &major, &minor); err != nil {
		return "", fmt.Errorf("parsing %s device number %q: %w", name, b, err)
	}
	if err := unix.Mknod(n, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor))); err != nil && !errors.Is(err, unix.EEXIST) {
		return "", fmt.Errorf("creating %s: %w", n, err)
	}
	return n, nil
}
