// Package inventory describes a machine's hardware from what the kernel
// exposes — sysfs, procfs, the raw SMBIOS table — and from NVMe and ATA
// identify commands, without udev (the vetting live image has none). It
// reads everything below a root path, so tests run it on captured trees.
//
// Collect never fails because one source is unreadable: what could not be
// read is left empty and explained in Inventory.Warnings. Facts flattens an
// inventory into the named values an expected spec is checked against; it
// works on a stored inventory too, so the orchestrator can re-diff later.
package inventory

import (
	"context"
	"fmt"
	"sort"
)

// Inventory is one machine's hardware.
type Inventory struct {
	Kernel string `json:"kernel,omitempty"`
	// SMBIOSVersion is empty when the table was not readable.
	SMBIOSVersion string   `json:"smbios_version,omitempty"`
	System        System   `json:"system"`
	Board         Board    `json:"board"`
	BIOS          BIOS     `json:"bios"`
	CPU           CPU      `json:"cpu"`
	Memory        Memory   `json:"memory"`
	Disks         []Disk   `json:"disks"`
	NICs          []NIC    `json:"nics"`
	PCIe          []PCIe   `json:"pcie"`
	Warnings      []string `json:"warnings,omitempty"`
}

// System identifies the machine (SMBIOS type 1).
type System struct {
	Manufacturer string `json:"manufacturer,omitempty"`
	Product      string `json:"product,omitempty"`
	Version      string `json:"version,omitempty"`
	Serial       string `json:"serial,omitempty"`
	UUID         string `json:"uuid,omitempty"`
	SKU          string `json:"sku,omitempty"`
	Family       string `json:"family,omitempty"`
}

// Board is the baseboard (SMBIOS type 2).
type Board struct {
	Manufacturer string `json:"manufacturer,omitempty"`
	Product      string `json:"product,omitempty"`
	Version      string `json:"version,omitempty"`
	Serial       string `json:"serial,omitempty"`
}

// BIOS is the firmware (SMBIOS type 0).
type BIOS struct {
	Vendor  string `json:"vendor,omitempty"`
	Version string `json:"version,omitempty"`
	Date    string `json:"date,omitempty"`
}

// CPU summarises the processors; Packages has one entry per socket in use.
type CPU struct {
	Model  string `json:"model,omitempty"`
	Vendor string `json:"vendor,omitempty"`
	// Sockets, Cores (physical) and Threads (online logical CPUs).
	Sockets  int       `json:"sockets"`
	Cores    int       `json:"cores"`
	Threads  int       `json:"threads"`
	MaxMHz   int       `json:"max_mhz,omitempty"`
	Packages []Package `json:"packages"`
}

// Package is one physical processor.
type Package struct {
	ID int `json:"id"`
	// Socket is the SMBIOS socket designation ("CPU1"), when known.
	Socket  string `json:"socket,omitempty"`
	Model   string `json:"model,omitempty"`
	Cores   int    `json:"cores"`
	Threads int    `json:"threads"`
	MaxMHz  int    `json:"max_mhz,omitempty"`
}

// Memory is the system memory.
type Memory struct {
	// UsableBytes is the kernel's MemTotal: installed memory minus firmware
	// and kernel reservations.
	UsableBytes int64 `json:"usable_bytes"`
	// InstalledBytes is the sum of the populated DIMMs (0 without SMBIOS).
	InstalledBytes int64  `json:"installed_bytes"`
	DIMMs          []DIMM `json:"dimms"`
}

// DIMM is one memory slot (SMBIOS type 17); SizeBytes 0 is an empty slot.
type DIMM struct {
	Locator      string `json:"locator"`
	Bank         string `json:"bank,omitempty"`
	SizeBytes    int64  `json:"size_bytes"`
	Type         string `json:"type,omitempty"`
	FormFactor   string `json:"form_factor,omitempty"`
	SpeedMTs     int    `json:"speed_mts,omitempty"`
	ConfiguredMT int    `json:"configured_speed_mts,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
	Serial       string `json:"serial,omitempty"`
	PartNumber   string `json:"part_number,omitempty"`
	ECC          bool   `json:"ecc"`
}

// Disk is a whole block device (no partitions, loop, RAM or optical drives).
type Disk struct {
	Name string `json:"name"`
	// Transport is nvme, ata, scsi, virtio, usb, mmc or "" when unknown.
	Transport     string `json:"transport,omitempty"`
	Model         string `json:"model,omitempty"`
	Vendor        string `json:"vendor,omitempty"`
	Serial        string `json:"serial,omitempty"`
	Firmware      string `json:"firmware,omitempty"`
	WWN           string `json:"wwn,omitempty"`
	SizeBytes     int64  `json:"size_bytes"`
	LogicalBlock  int    `json:"logical_block"`
	PhysicalBlock int    `json:"physical_block"`
	Rotational    bool   `json:"rotational"`
	// RPM is the ATA nominal rotation rate, 0 when unknown or solid state.
	RPM       int    `json:"rpm,omitempty"`
	Removable bool   `json:"removable"`
	PCI       string `json:"pci,omitempty"`
	// Controller is the NVMe controller ("nvme0") for NVMe namespaces.
	Controller string `json:"controller,omitempty"`
	// SMART is nil when the device offers none (virtio) or it could not be
	// read (see Warnings).
	SMART *SMART `json:"smart,omitempty"`
}

// SMART is a disk's health summary.
type SMART struct {
	// Health is PASSED or FAILED (the drive's own overall assessment).
	Health string `json:"health"`
	// Counters holds the values kiln compares before and after a stage:
	// reallocated_sectors, pending_sectors, offline_uncorrectable,
	// reported_uncorrectable, media_errors, critical_warning,
	// percentage_used, available_spare, temperature_c, power_on_hours,
	// unsafe_shutdowns, error_log_entries, udma_crc_errors — whichever the
	// device reports.
	Counters map[string]int64 `json:"counters"`
}

// NIC is a network interface backed by a device (no loopback, bridges,
// bonds or other virtual interfaces).
type NIC struct {
	Name   string `json:"name"`
	MAC    string `json:"mac"`
	Driver string `json:"driver,omitempty"`
	PCI    string `json:"pci,omitempty"`
	// SpeedMbps is the negotiated speed, 0 when unknown or without carrier.
	SpeedMbps int    `json:"speed_mbps"`
	Carrier   bool   `json:"carrier"`
	Operstate string `json:"operstate,omitempty"`
	Duplex    string `json:"duplex,omitempty"`
	MTU       int    `json:"mtu,omitempty"`
}

// PCIe is one PCI Express endpoint's link (bridges are left out).
type PCIe struct {
	Address string `json:"address"`
	Class   string `json:"class"`
	Vendor  string `json:"vendor"`
	Device  string `json:"device"`
	Driver  string `json:"driver,omitempty"`
	// Speeds in GT/s (2.5, 5, 8, 16, 32, 64) and widths in lanes.
	SpeedGTs    float64 `json:"speed_gts"`
	MaxSpeedGTs float64 `json:"max_speed_gts"`
	Width       int     `json:"width"`
	MaxWidth    int     `json:"max_width"`
	// Degraded: the link trained below its maximum speed or width.
	Degraded bool `json:"degraded"`
}

// Config says where Collect reads from.
type Config struct {
	// Root is the machine's root directory ("/" on the machine itself); used
	// when FS is nil.
	Root string
	// FS overrides the file access (tests record reads with it).
	FS FS
	// NVMe and ATA run identify and SMART commands; nil leaves disks with
	// what sysfs knows. Devices(root + "/dev") provides both.
	NVMe NVMeProber
	ATA  ATAProber
}

// Collect reads the machine's inventory. It returns an error only when ctx
// ends; unreadable sources become Warnings.
func Collect(ctx context.Context, cfg Config) (Inventory, error) {
	fsys := cfg.FS
	if fsys == nil {
		root := cfg.Root
		if root == "" {
			root = "/"
		}
		fsys = DirFS(root)
	}
	c := &collector{r: reader{fsys}, nvme: cfg.NVMe, ata: cfg.ATA}
	c.inv.Kernel = c.r.strOr("proc/sys/kernel/osrelease")
	steps := []func(){c.dmi, c.cpu, c.memory, c.disks, c.nics, c.pcie}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return Inventory{}, fmt.Errorf("collecting inventory: %w", err)
		}
		step()
	}
	if c.inv.Disks == nil {
		c.inv.Disks = []Disk{}
	}
	if c.inv.NICs == nil {
		c.inv.NICs = []NIC{}
	}
	if c.inv.PCIe == nil {
		c.inv.PCIe = []PCIe{}
	}
	if c.inv.Memory.DIMMs == nil {
		c.inv.Memory.DIMMs = []DIMM{}
	}
	if c.inv.CPU.Packages == nil {
		c.inv.CPU.Packages = []Package{}
	}
	return c.inv, nil
}

type collector struct {
	r    reader
	nvme NVMeProber
	ata  ATAProber
	inv  Inventory
	// smbiosCPUs and smbiosMemory are kept from the DMI table for the CPU
	// and memory steps.
	smbiosCPUs []smbiosCPU
}

type smbiosCPU struct {
	socket, version string
	maxMHz          int
}

func (c *collector) warn(format string, args ...any) {
	c.inv.Warnings = append(c.inv.Warnings, fmt.Sprintf(format, args...))
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}
