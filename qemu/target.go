package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Target is a bare-metal machine stand-in that network-boots from an
// appliance over a private segment: OVMF, TCG, no option ROM (OVMF's own
// virtio-net driver and UEFI PXE, as on most servers: DHCP → TFTP ipxe.efi →
// iPXE → its script over HTTP), the NIC first in the boot order, blank
// qcow2 scratch disks the vetting storage stage reads and a virtio RNG.
// `kiln vm run --targets` and the vetting tier-4 test boot the same machine.
type Target struct {
	// Dir holds the target's files: the OVMF vars, serial.log and the disks
	// (disk1.qcow2, disk2.qcow2, …). Disks that exist are kept, so a target
	// powered on again is the same machine.
	Dir string
	// NIC is the one network card, on the appliance's provisioning segment.
	NIC NIC
	// MemoryMiB is the guest memory; DefaultTargetMemoryMiB if zero.
	MemoryMiB int
	// CPUs is the number of vCPUs; 2 if zero.
	CPUs int
	// DiskSizes are the virtio disks' sizes in bytes; DefaultTargetDisks if nil.
	DiskSizes []int64
}

// Defaults of a Target: 2 GiB of memory and two disks (2 GiB, 1 GiB), small
// enough that a quick vetting run under TCG stays short.
const DefaultTargetMemoryMiB = 2048

// DefaultTargetDisks are the disk sizes of a Target unless set.
var DefaultTargetDisks = []int64{2 << 30, 1 << 30}

func (t Target) withDefaults() Target {
	if t.MemoryMiB == 0 {
		t.MemoryMiB = DefaultTargetMemoryMiB
	}
	if t.CPUs == 0 {
		t.CPUs = 2
	}
	if t.DiskSizes == nil {
		t.DiskSizes = DefaultTargetDisks
	}
	return t
}

// DiskPath is the file of the target's i-th disk (0-based).
func (t Target) DiskPath(i int) string {
	return filepath.Join(t.Dir, fmt.Sprintf("disk%d.qcow2", i+1))
}

// Config creates the target's missing disks and returns its VM config.
func (t Target) Config(ctx context.Context) (Config, error) {
	t = t.withDefaults()
	if t.Dir == "" {
		return Config{}, fmt.Errorf("%w: Target.Dir is empty: give the target a directory for its disks and serial log", ErrConfig)
	}
	if err := os.MkdirAll(t.Dir, 0o755); err != nil {
		return Config{}, fmt.Errorf("creating the target's directory: %w", err)
	}
	nic := t.NIC
	nic.Boot = true
	c := Config{
		WorkDir:   t.Dir,
		Firmware:  UEFI,
		MemoryMiB: t.MemoryMiB,
		CPUs:      t.CPUs,
		NICs:      []NIC{nic},
		// A target that hangs is a finding, not something to reset.
		NoWatchdog: true,
		// No option ROM: the network boot goes through OVMF's UEFI PXE. An
		// entropy source: TCG has no RDRAND, and the live image's DHCP and
		// SSH host key would wait minutes for the kernel's pool.
		Extra: []string{"-global", "virtio-net-pci.romfile=", "-device", "virtio-rng-pci"},
	}
	for i, size := range t.DiskSizes {
		p := t.DiskPath(i)
		if err := CreateDisk(ctx, p, size); err != nil {
			return Config{}, err
		}
		c.Disks = append(c.Disks, Disk{Path: p, Format: "qcow2", Serial: fmt.Sprintf("kiln-target-%d", i+1)})
	}
	return c, nil
}

// ExpectedSpec is an expected spec (the vetting spec YAML, see
// services/vetting/spec) that a target of this shape meets: vendor, vCPUs,
// memory, disks and NICs.
func (t Target) ExpectedSpec() string {
	t = t.withDefaults()
	mem := fmt.Sprintf("%dMiB", t.MemoryMiB)
	if t.MemoryMiB%1024 == 0 {
		mem = fmt.Sprintf("%dGiB", t.MemoryMiB/1024)
	}
	sizes := make([]string, len(t.DiskSizes))
	for i, s := range t.DiskSizes {
		sizes[i] = strconv.FormatInt(s, 10)
	}
	return fmt.Sprintf(`# a kiln QEMU vetting target
expect:
  - fact: system.manufacturer
    exact: QEMU
  - fact: cpu.threads
    exact: %d
  - fact: memory.installed_bytes
    min: %s
  - fact: disks.count
    exact: %d
  - fact: disks.size_bytes
    exact: [%s]
  - fact: nics.count
    exact: 1
`, t.CPUs, mem, len(t.DiskSizes), strings.Join(sizes, ", "))
}

// CreateDisk creates a blank qcow2 disk of size bytes at path unless a file
// is there already (which is kept as it is).
func CreateDisk(ctx context.Context, path string, size int64) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("creating disk %s: %w", path, err)
	}
	if size <= 0 {
		return fmt.Errorf("%w: disk %s: size %d: use a positive number of bytes", ErrConfig, path, size)
	}
	tmp := path + ".tmp"
	os.Remove(tmp)
	if _, err := qemuImg(ctx, "create", "-q", "-f", "qcow2", tmp, strconv.FormatInt(size, 10)); err != nil {
		return fmt.Errorf("creating disk %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("creating disk %s: %w", path, err)
	}
	return nil
}
