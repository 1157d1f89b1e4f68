// Package smbiostest builds realistic SMBIOS tables for tests: structures of
// the types kiln decodes, laid out at the offsets of the DMTF specification
// (3.x lengths), plus two complete machines — what QEMU's q35 machine
// generates and a two-socket rack server.
package smbiostest

import (
	"encoding/binary"

	"kiln.dev/kiln/services/vetting/inventory/smbios"
)

// strs collects a structure's strings and hands out string numbers.
type strs []string

func (s *strs) add(v string) byte {
	if v == "" {
		return 0
	}
	*s = append(*s, v)
	return byte(len(*s))
}

// BIOS returns a type 0 structure (SMBIOS 3.x length 0x1a).
func BIOS(handle uint16, vendor, version, date string, major, minor uint8) smbios.Structure {
	var s strs
	f := make([]byte, 0x1a)
	f[0x04] = s.add(vendor)
	f[0x05] = s.add(version)
	binary.LittleEndian.PutUint16(f[0x06:], 0xe800) // starting segment
	f[0x08] = s.add(date)
	f[0x09] = 0                                   // ROM size 64K
	binary.LittleEndian.PutUint64(f[0x0a:], 0x08) // characteristics: not supported flag clear
	f[0x12], f[0x13] = 0x00, 0x1c                 // extension bytes: VM, UEFI support
	f[0x14], f[0x15] = major, minor
	f[0x16], f[0x17] = 0xff, 0xff // embedded controller firmware: not applicable
	return smbios.Structure{Type: smbios.TypeBIOS, Handle: handle, Formatted: f, Strings: s}
}

// System returns a type 1 structure; uuid is the 16 bytes as stored.
func System(handle uint16, manufacturer, product, version, serial string, uuid [16]byte, sku, family string) smbios.Structure {
	var s strs
	f := make([]byte, 0x1b)
	f[0x04] = s.add(manufacturer)
	f[0x05] = s.add(product)
	f[0x06] = s.add(version)
	f[0x07] = s.add(serial)
	copy(f[0x08:], uuid[:])
	f[0x18] = 0x06 // wake-up type: power switch
	f[0x19] = s.add(sku)
	f[0x1a] = s.add(family)
	return smbios.Structure{Type: smbios.TypeSystem, Handle: handle, Formatted: f, Strings: s}
}

// Baseboard returns a type 2 structure.
func Baseboard(handle uint16, manufacturer, product, version, serial, asset string) smbios.Structure {
	var s strs
	f := make([]byte, 0x0f)
	f[0x04] = s.add(manufacturer)
	f[0x05] = s.add(product)
	f[0x06] = s.add(version)
	f[0x07] = s.add(serial)
	f[0x08] = s.add(asset)
	f[0x09] = 0x01 // feature flags: hosting board
	f[0x0d] = 0x0a // board type: motherboard
	return smbios.Structure{Type: smbios.TypeBaseboard, Handle: handle, Formatted: f, Strings: s}
}

// Processor describes a type 4 structure's interesting fields.
type Processor struct {
	Socket, Manufacturer, Version, Serial, PartNumber string
	Populated                                         bool
	MaxMHz, CurrentMHz                                uint16
	Cores, EnabledCores, Threads                      uint16
}

// ProcessorStructure returns a type 4 structure (SMBIOS 3.0 length 0x30).
func ProcessorStructure(handle uint16, p Processor) smbios.Structure {
	var s strs
	f := make([]byte, 0x30)
	f[0x04] = s.add(p.Socket)
	f[0x05] = 0x03 // central processor
	f[0x06] = 0xfe // family: see family 2
	f[0x07] = s.add(p.Manufacturer)
	f[0x10] = s.add(p.Version)
	f[0x11] = 0x80
	binary.LittleEndian.PutUint16(f[0x12:], 100)
	binary.LittleEndian.PutUint16(f[0x14:], p.MaxMHz)
	binary.LittleEndian.PutUint16(f[0x16:], p.CurrentMHz)
	if p.Populated {
		f[0x18] = 0x41 // populated, enabled
	}
	f[0x19] = 0x01
	binary.LittleEndian.PutUint16(f[0x1a:], 0xffff) // cache handles
	binary.LittleEndian.PutUint16(f[0x1c:], 0xffff)
	binary.LittleEndian.PutUint16(f[0x1e:], 0xffff)
	f[0x20] = s.add(p.Serial)
	f[0x22] = s.add(p.PartNumber)
	setCount := func(byteOff, wordOff int, v uint16) {
		if v > 0xfe {
			f[byteOff] = 0xff
		} else {
			f[byteOff] = byte(v)
		}
		binary.LittleEndian.PutUint16(f[wordOff:], v)
	}
	setCount(0x23, 0x2a, p.Cores)
	setCount(0x24, 0x2c, p.EnabledCores)
	setCount(0x25, 0x2e, p.Threads)
	binary.LittleEndian.PutUint16(f[0x26:], 0x00fc) // 64-bit, multi-core, HT, …
	binary.LittleEndian.PutUint16(f[0x28:], 0x00b3)
	return smbios.Structure{Type: smbios.TypeProcessor, Handle: handle, Formatted: f, Strings: s}
}

// Memory describes a type 17 structure's interesting fields. SizeMiB 0 is an
// empty slot.
type Memory struct {
	Locator, BankLocator, Manufacturer, Serial, PartNumber string
	SizeMiB                                                uint32
	FormFactor, Type                                       uint8
	SpeedMTs, ConfiguredMTs                                uint16
	TotalWidth, DataWidth                                  uint16
}

// MemoryStructure returns a type 17 structure (SMBIOS 3.2 length 0x28).
func MemoryStructure(handle uint16, m Memory) smbios.Structure {
	var s strs
	f := make([]byte, 0x28)
	binary.LittleEndian.PutUint16(f[0x04:], 0x1000)
	binary.LittleEndian.PutUint16(f[0x06:], 0xfffe)
	binary.LittleEndian.PutUint16(f[0x08:], m.TotalWidth)
	binary.LittleEndian.PutUint16(f[0x0a:], m.DataWidth)
	switch {
	case m.SizeMiB >= 0x7fff:
		binary.LittleEndian.PutUint16(f[0x0c:], 0x7fff)
		binary.LittleEndian.PutUint32(f[0x1c:], m.SizeMiB)
	default:
		binary.LittleEndian.PutUint16(f[0x0c:], uint16(m.SizeMiB))
	}
	f[0x0e] = m.FormFactor
	f[0x10] = s.add(m.Locator)
	f[0x11] = s.add(m.BankLocator)
	f[0x12] = m.Type
	binary.LittleEndian.PutUint16(f[0x13:], 0x0080) // synchronous
	binary.LittleEndian.PutUint16(f[0x15:], m.SpeedMTs)
	f[0x17] = s.add(m.Manufacturer)
	f[0x18] = s.add(m.Serial)
	f[0x1a] = s.add(m.PartNumber)
	binary.LittleEndian.PutUint16(f[0x20:], m.ConfiguredMTs)
	return smbios.Structure{Type: smbios.TypeMemoryDevice, Handle: handle, Formatted: f, Strings: s}
}

// Other returns a structure of a type kiln does not decode (chassis, memory
// array, …) with a zeroed formatted area, so tables look like real ones.
func Other(typ uint8, handle uint16, length int, strings ...string) smbios.Structure {
	return smbios.Structure{Type: typ, Handle: handle, Formatted: make([]byte, length), Strings: strings}
}

// QEMU returns the table QEMU 7.2's q35 machine with SeaBIOS generates for a
// guest with the given memory and CPUs (one socket).
func QEMU(memMiB uint32, cpus uint16) []byte {
	return smbios.Encode([]smbios.Structure{
		BIOS(0x0000, "SeaBIOS", "1.16.2-debian-1.16.2-1", "04/01/2014", 0, 0),
		System(0x0100, "QEMU", "Standard PC (Q35 + ICH9, 2009)", "pc-q35-7.2", "", [16]byte{}, "", ""),
		Other(3, 0x0300, 0x16, "QEMU", "pc-q35-7.2"),
		ProcessorStructure(0x0400, Processor{Socket: "CPU 0", Manufacturer: "QEMU", Version: "pc-q35-7.2",
			Populated: true, MaxMHz: 2000, CurrentMHz: 2000, Cores: cpus, EnabledCores: cpus, Threads: cpus}),
		Other(16, 0x1000, 0x17),
		MemoryStructure(0x1100, Memory{Locator: "DIMM 0", Manufacturer: "QEMU", SizeMiB: memMiB,
			FormFactor: 0x09, Type: 0x07, TotalWidth: 0xffff, DataWidth: 0xffff}),
		Other(19, 0x1300, 0x1f),
		Other(32, 0x2000, 0x0b),
	})
}

// Server returns the table of a two-socket rack server with 16 DIMM slots,
// 8 of them holding 32 GiB DDR4 ECC RDIMMs.
func Server() []byte {
	structs := []smbios.Structure{
		BIOS(0x0000, "Dell Inc.", "1.9.2", "11/03/2022", 1, 9),
		System(0x0100, "Dell Inc.", "PowerEdge R650", "", "7XQ9K53",
			[16]byte{0x44, 0x45, 0x4c, 0x4c, 0x58, 0x00, 0x10, 0x51, 0x80, 0x39, 0xb7, 0xc0, 0x4f, 0x4b, 0x35, 0x33},
			"SKU=0A1B;ModelName=PowerEdge R650", "PowerEdge"),
		Baseboard(0x0200, "Dell Inc.", "0Y2K8N", "A03", ".7XQ9K53.CNFCP0022B00KL.", ""),
		Other(3, 0x0300, 0x16, "Dell Inc.", "7XQ9K53"),
	}
	for i, socket := range []string{"CPU1", "CPU2"} {
		structs = append(structs, ProcessorStructure(0x0400+uint16(i), Processor{
			Socket: socket, Manufacturer: "Intel", Version: "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
			Populated: true, MaxMHz: 4000, CurrentMHz: 2000, Cores: 32, EnabledCores: 32, Threads: 64,
		}))
	}
	structs = append(structs, Other(16, 0x1000, 0x17))
	for i := 0; i < 16; i++ {
		m := Memory{Locator: "A" + string(rune('1'+i%8)), BankLocator: "", FormFactor: 0x09, Type: 0x1a,
			TotalWidth: 72, DataWidth: 64}
		if i >= 8 {
			m.Locator = "B" + string(rune('1'+i%8))
		}
		if i%2 == 0 {
			m.SizeMiB = 32768
			m.SpeedMTs, m.ConfiguredMTs = 3200, 3200
			m.Manufacturer = "00CE00B300CE"
			m.Serial = "0" + string(rune('A'+i)) + "5F21C7"
			m.PartNumber = "M393A4K40EB3-CWE    "
		} else {
			m.Manufacturer, m.Serial, m.PartNumber = "Not Specified", "Not Specified", "Not Specified"
			m.TotalWidth, m.DataWidth = 0xffff, 0xffff
		}
		structs = append(structs, MemoryStructure(0x1100+uint16(i), m))
	}
	structs = append(structs, Other(19, 0x1300, 0x1f), Other(32, 0x2000, 0x0b))
	return smbios.Encode(structs)
}

// EntryPoint3 returns a 64-bit SMBIOS 3.x entry point for a table of the
// given length.
func EntryPoint3(major, minor, docrev uint8, tableLen uint32) []byte {
	b := make([]byte, 0x18)
	copy(b, "_SM3_")
	b[6] = 0x18
	b[7], b[8], b[9] = major, minor, docrev
	b[0x0a] = 0x01
	binary.LittleEndian.PutUint32(b[0x0c:], tableLen)
	var sum byte
	for _, c := range b {
		sum += c
	}
	b[5] = -sum
	return b
}
