// Package partitions owns kiln's one disk layout: partition order, sizes, GPT type
// GUIDs, labels and the partition UUIDs derived from an appliance ID, plus the
// helpers that find the boot disk and the active slot on a running system.
package partitions

import (
	"crypto/sha256"
	"fmt"
	"strings"
)

// Well-known GPT partition type GUIDs (UEFI spec and the Discoverable Partitions Specification).
const (
	TypeESP       = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeRootX8664 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	// TypeLinuxData is the generic Linux data type: a host that sees a kiln stick must
	// not auto-mount its state (the discoverable /var and /srv types would invite that).
	TypeLinuxData = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	// TypeBIOSBoot holds GRUB's core image for legacy BIOS boot ("Hah!IdontNeedEFI").
	TypeBIOSBoot = "21686148-6449-6E6F-744E-656564454649"
)

// SectorSize is the logical sector size kiln images are built for.
const SectorSize = 512

const mib = 1 << 20

// Role names a partition's job in the layout.
type Role string

const (
	RoleESP   Role = "esp"
	RoleRootA Role = "root-a"
	RoleRootB Role = "root-b"
	RoleData  Role = "data"
	RoleBIOS  Role = "bios"
)

// Partition is one entry of the layout.
type Partition struct {
	Index int    // 1-based GPT index, also the Linux partition number
	Role  Role   // job in the layout
	Label string // GPT partition name
	Type  string // GPT type GUID
	Start uint64 // first byte
	Size  uint64 // bytes; the data partition grows on first boot
}

// End returns the first byte after the partition.
func (p Partition) End() uint64 { return p.Start + p.Size }

// Sizes of the partitions in a freshly built image. The ESP size is one that
// go-diskfs formats to a FAT32 that fsck.vfat accepts (64/129/194/259 MiB do not).
const (
	ESPSize      = 160 * mib
	RootSize     = 512 * mib
	DataSize     = 128 * mib // grown to fill the disk on first boot
	FirstLBAByte = 1 * mib
	// GPTTrailer is room for the backup GPT at the end of the disk.
	GPTTrailer = 1 * mib
	// BIOSBootStart is where the BIOS boot partition starts: sector 40, the first
	// 4 KiB-aligned sector after the primary GPT's 32 sectors of entries. It fills
	// the gap up to the ESP at 1 MiB, so the ESP and the roots stay where images
	// without it had them.
	BIOSBootStart = 40 * SectorSize
)

// Layout returns the partitions of an image, in on-disk order. The BIOS boot
// partition comes first on disk but has index 5, so partitions 1-4 keep their
// numbers (/dev/sda4 is data) on images built before legacy BIOS boot.
func Layout() []Partition {
	bios := Partition{Index: 5, Role: RoleBIOS, Label: "kiln-bios", Type: TypeBIOSBoot, Start: BIOSBootStart, Size: FirstLBAByte - BIOSBootStart}
	esp := Partition{Index: 1, Role: RoleESP, Label: "kiln-esp", Type: TypeESP, Start: FirstLBAByte, Size: ESPSize}
	a := Partition{Index: 2, Role: RoleRootA, Label: "kiln-root-a", Type: TypeRootX8664, Start: esp.End(), Size: RootSize}
	b := Partition{Index: 3, Role: RoleRootB, Label: "kiln-root-b", Type: TypeRootX8664, Start: a.End(), Size: RootSize}
	data := Partition{Index: 4, Role: RoleData, Label: "kiln-data", Type: TypeLinuxData, Start: b.End(), Size: DataSize}
	return []Partition{bios, esp, a, b, data}
}

// ImageSize is the size in bytes of a freshly built raw image.
func ImageSize() uint64 {
	l := Layout()
	return l[len(l)-1].End() + GPTTrailer
}

// ByRole returns the layout entry for a role.
func ByRole(r Role) (Partition, error) {
	for _, p := range Layout() {
		if p.Role == r {
			return p, nil
		}
	}
	return Partition{}, fmt.Errorf("partitions: no partition with role %q", r)
}

// Slot is an A/B root slot.
type Slot string

const (
	SlotA Slot = "a"
	SlotB Slot = "b"
)

// Other returns the other slot.
func (s Slot) Other() Slot {
	if s == SlotA {
		return SlotB
	}
	return SlotA
}

// Role returns the root partition role of the slot.
func (s Slot) Role() Role {
	if s == SlotB {
		return RoleRootB
	}
	return RoleRootA
}

// ParseSlot parses "a" or "b".
func ParseSlot(s string) (Slot, error) {
	switch Slot(s) {
	case SlotA, SlotB:
		return Slot(s), nil
	}
	return "", fmt.Errorf("partitions: slot %q is not a or b", s)
}

// DiskGUID derives the disk GUID from an appliance ID.
func DiskGUID(applianceID string) string { return derive(applianceID, "disk") }

// PartUUID derives a partition's unique GUID from an appliance ID, so two images
// built with different IDs never collide when both are attached to one host.
func PartUUID(applianceID string, r Role) string { return derive(applianceID, "part/"+string(r)) }

// derive builds an RFC 4122 version-5-shaped UUID (SHA-256 based) from the ID and a name.
func derive(applianceID, name string) string {
	sum := sha256.Sum256([]byte("kiln/" + applianceID + "/" + name))
	b := sum[:16]
	b[6] = (b[6] & 0x0f) | 0x50
	b[8] = (b[8] & 0x3f) | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}

// LiveID derives the ID of a live ISO built for an appliance ID, version and
// generation: the kernel command line names it (kiln.live=) and stage 1 boots
// only the medium that carries it, so another kiln ISO in the same machine is
// never taken for this one.
func LiveID(applianceID, version string, generation int) string {
	return derive(applianceID, fmt.Sprintf("live/%s/%d", version, generation))
}

// LiveVolumeSetID is how a live ISO carries its LiveID in its volume
// descriptor (ISO 9660 allows only A-Z, 0-9 and _ there).
func LiveVolumeSetID(liveID string) string {
	return "KILN_LIVE_" + strings.ReplaceAll(strings.ToUpper(liveID), "-", "")
}
