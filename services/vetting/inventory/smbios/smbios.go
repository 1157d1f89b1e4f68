// Package smbios parses the raw SMBIOS (DMI) structure table the kernel
// exports at /sys/firmware/dmi/tables/DMI and decodes the structure types the
// vetting inventory needs: 0 (BIOS), 1 (system), 2 (baseboard), 4 (processor)
// and 17 (memory device). It also encodes tables, so tests can build
// realistic blobs.
//
// The parser is written for hostile input: every offset is bounds-checked, a
// truncated or garbled table yields the structures before the damage plus an
// error, never a panic.
package smbios

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Structure types decoded by this package.
const (
	TypeBIOS         = 0
	TypeSystem       = 1
	TypeBaseboard    = 2
	TypeProcessor    = 4
	TypeMemoryDevice = 17
	TypeEndOfTable   = 127
)

// ErrTruncated reports a table that ends inside a structure.
var ErrTruncated = errors.New("smbios: table truncated")

// Structure is one raw SMBIOS structure: its header, formatted area
// (including the 4-byte header) and its string set.
type Structure struct {
	Type   uint8
	Handle uint16
	// Formatted is the formatted area, header included, so field offsets
	// match the DMTF specification's tables.
	Formatted []byte
	// Strings are the structure's strings; string number n is Strings[n-1].
	Strings []string
}

// Parse splits a DMI table into structures. It stops at the end-of-table
// structure (type 127) or the end of data. On damage it returns the
// structures parsed so far and an error.
func Parse(table []byte) ([]Structure, error) {
	var out []Structure
	for off := 0; off < len(table); {
		if len(table)-off < 4 {
			// Trailing padding after the last structure is common; only
			// complain when it is not all zero.
			if allZero(table[off:]) {
				return out, nil
			}
			return out, fmt.Errorf("structure at offset %d: %w", off, ErrTruncated)
		}
		typ, length := table[off], int(table[off+1])
		if length < 4 {
			return out, fmt.Errorf("structure at offset %d: length %d below the 4-byte header", off, length)
		}
		if off+length > len(table) {
			return out, fmt.Errorf("structure type %d at offset %d: %w", typ, off, ErrTruncated)
		}
		s := Structure{
			Type:      typ,
			Handle:    binary.LittleEndian.Uint16(table[off+2:]),
			Formatted: table[off : off+length],
		}
		// The string set follows and ends with two NULs; a structure without
		// strings is followed by exactly two NULs.
		rest := table[off+length:]
		end := bytes.Index(rest, []byte{0, 0})
		if end < 0 {
			return out, fmt.Errorf("strings of structure type %d at offset %d: %w", typ, off, ErrTruncated)
		}
		if end > 0 {
			for _, str := range bytes.Split(rest[:end], []byte{0}) {
				s.Strings = append(s.Strings, string(str))
			}
		}
		out = append(out, s)
		off += length + end + 2
		if typ == TypeEndOfTable {
			break
		}
	}
	return out, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Encode renders structures as a DMI table (the inverse of Parse), appending
// an end-of-table structure when the last one is not already type 127.
func Encode(structs []Structure) []byte {
	var b bytes.Buffer
	for _, s := range structs {
		f := append([]byte(nil), s.Formatted...)
		if len(f) < 4 {
			f = append(f, make([]byte, 4-len(f))...)
		}
		f[0], f[1] = s.Type, byte(len(f))
		binary.LittleEndian.PutUint16(f[2:], s.Handle)
		b.Write(f)
		if len(s.Strings) == 0 {
			b.Write([]byte{0, 0})
			continue
		}
		for _, str := range s.Strings {
			b.WriteString(str)
			b.WriteByte(0)
		}
		b.WriteByte(0)
	}
	if len(structs) == 0 || structs[len(structs)-1].Type != TypeEndOfTable {
		b.Write([]byte{TypeEndOfTable, 4, 0xff, 0xfe, 0, 0})
	}
	return b.Bytes()
}

// field accessors: out-of-range reads return zero values, as the
// specification says for fields a shorter (older) structure lacks.

func (s Structure) u8(off int) uint8 {
	if off < len(s.Formatted) {
		return s.Formatted[off]
	}
	return 0
}

func (s Structure) u16(off int) uint16 {
	if off+2 <= len(s.Formatted) {
		return binary.LittleEndian.Uint16(s.Formatted[off:])
	}
	return 0
}

func (s Structure) u32(off int) uint32 {
	if off+4 <= len(s.Formatted) {
		return binary.LittleEndian.Uint32(s.Formatted[off:])
	}
	return 0
}

func (s Structure) has(off, size int) bool { return off+size <= len(s.Formatted) }

// str returns the string a string-number field at off points to.
func (s Structure) str(off int) string {
	n := int(s.u8(off))
	if n == 0 || n > len(s.Strings) {
		return ""
	}
	return cleanString(s.Strings[n-1])
}

// cleanString trims padding and drops non-printable bytes firmware leaves in.
func cleanString(v string) string {
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if c := v[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		}
	}
	return string(bytes.TrimSpace(b))
}

// Table is the decoded subset of an SMBIOS table.
type Table struct {
	BIOS       *BIOS          `json:"bios,omitempty"`
	System     *System        `json:"system,omitempty"`
	Baseboards []Baseboard    `json:"baseboards,omitempty"`
	Processors []Processor    `json:"processors,omitempty"`
	Memory     []MemoryDevice `json:"memory_devices,omitempty"`
}

// Decode decodes the known structure types; unknown types are ignored.
func Decode(structs []Structure) Table {
	var t Table
	for _, s := range structs {
		switch s.Type {
		case TypeBIOS:
			if t.BIOS == nil {
				b := decodeBIOS(s)
				t.BIOS = &b
			}
		case TypeSystem:
			if t.System == nil {
				v := decodeSystem(s)
				t.System = &v
			}
		case TypeBaseboard:
			t.Baseboards = append(t.Baseboards, decodeBaseboard(s))
		case TypeProcessor:
			t.Processors = append(t.Processors, decodeProcessor(s))
		case TypeMemoryDevice:
			t.Memory = append(t.Memory, decodeMemoryDevice(s))
		}
	}
	return t
}

// BIOS is structure type 0.
type BIOS struct {
	Vendor      string `json:"vendor"`
	Version     string `json:"version"`
	ReleaseDate string `json:"release_date"`
	// Release is the system BIOS major.minor release, when present.
	Release string `json:"release,omitempty"`
}

func decodeBIOS(s Structure) BIOS {
	b := BIOS{Vendor: s.str(0x04), Version: s.str(0x05), ReleaseDate: s.str(0x08)}
	if s.has(0x14, 2) && s.u8(0x14) != 0xff {
		b.Release = fmt.Sprintf("%d.%d", s.u8(0x14), s.u8(0x15))
	}
	return b
}

// System is structure type 1.
type System struct {
	Manufacturer string `json:"manufacturer"`
	Product      string `json:"product"`
	Version      string `json:"version"`
	Serial       string `json:"serial"`
	UUID         string `json:"uuid,omitempty"`
	SKU          string `json:"sku,omitempty"`
	Family       string `json:"family,omitempty"`
}

func decodeSystem(s Structure) System {
	v := System{
		Manufacturer: s.str(0x04), Product: s.str(0x05), Version: s.str(0x06), Serial: s.str(0x07),
		SKU: s.str(0x19), Family: s.str(0x1a),
	}
	if s.has(0x08, 16) {
		v.UUID = formatUUID(s.Formatted[0x08:0x18])
	}
	return v
}

// formatUUID renders an SMBIOS UUID. Since SMBIOS 2.6 the first three fields
// are little-endian (what dmidecode and the kernel's product_uuid print).
// All-zero and all-ones mean "not present" / "not set".
func formatUUID(b []byte) string {
	if allZero(b) || bytes.Equal(b, bytes.Repeat([]byte{0xff}, 16)) {
		return ""
	}
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}

// Baseboard is structure type 2.
type Baseboard struct {
	Manufacturer string `json:"manufacturer"`
	Product      string `json:"product"`
	Version      string `json:"version"`
	Serial       string `json:"serial"`
	AssetTag     string `json:"asset_tag,omitempty"`
}

func decodeBaseboard(s Structure) Baseboard {
	return Baseboard{Manufacturer: s.str(0x04), Product: s.str(0x05), Version: s.str(0x06),
		Serial: s.str(0x07), AssetTag: s.str(0x08)}
}

// Processor is structure type 4.
type Processor struct {
	Socket       string `json:"socket"`
	Manufacturer string `json:"manufacturer"`
	Version      string `json:"version"`
	// Populated is the status field's "CPU socket populated" bit.
	Populated bool `json:"populated"`
	// MaxMHz and CurrentMHz are 0 when unknown.
	MaxMHz     int `json:"max_mhz,omitempty"`
	CurrentMHz int `json:"current_mhz,omitempty"`
	// Cores, EnabledCores and Threads are 0 when unknown.
	Cores        int    `json:"cores,omitempty"`
	EnabledCores int    `json:"enabled_cores,omitempty"`
	Threads      int    `json:"threads,omitempty"`
	Serial       string `json:"serial,omitempty"`
	PartNumber   string `json:"part_number,omitempty"`
}

func decodeProcessor(s Structure) Processor {
	p := Processor{
		Socket: s.str(0x04), Manufacturer: s.str(0x07), Version: s.str(0x10),
		Populated:  s.u8(0x18)&0x40 != 0,
		MaxMHz:     int(s.u16(0x14)),
		CurrentMHz: int(s.u16(0x16)),
		Serial:     s.str(0x20), PartNumber: s.str(0x22),
	}
	// Counts: the byte fields hold 0xff when the 2.0+ word fields
	// (SMBIOS 3.0) carry the value.
	count := func(byteOff, wordOff int) int {
		v := int(s.u8(byteOff))
		if v == 0xff && s.has(wordOff, 2) {
			v = int(s.u16(wordOff))
		}
		return v
	}
	if s.has(0x23, 3) {
		p.Cores = count(0x23, 0x2a)
		p.EnabledCores = count(0x24, 0x2c)
		p.Threads = count(0x25, 0x2e)
	}
	return p
}

// MemoryDevice is structure type 17.
type MemoryDevice struct {
	Locator     string `json:"locator"`
	BankLocator string `json:"bank_locator,omitempty"`
	// SizeBytes is 0 for an empty slot, -1 when the size is unknown.
	SizeBytes    int64  `json:"size_bytes"`
	FormFactor   string `json:"form_factor,omitempty"`
	Type         string `json:"type,omitempty"`
	SpeedMTs     int    `json:"speed_mts,omitempty"`
	ConfiguredMT int    `json:"configured_speed_mts,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
	Serial       string `json:"serial,omitempty"`
	PartNumber   string `json:"part_number,omitempty"`
	// TotalWidth and DataWidth are in bits; a total width above the data
	// width means ECC. 0 when unknown.
	TotalWidth int `json:"total_width,omitempty"`
	DataWidth  int `json:"data_width,omitempty"`
}

// Populated reports whether the slot holds a module.
func (m MemoryDevice) Populated() bool { return m.SizeBytes != 0 }

// ECC reports whether the module's total width exceeds its data width.
func (m MemoryDevice) ECC() bool {
	return m.TotalWidth > 0 && m.DataWidth > 0 && m.TotalWidth > m.DataWidth
}

func decodeMemoryDevice(s Structure) MemoryDevice {
	m := MemoryDevice{
		Locator: s.str(0x10), BankLocator: s.str(0x11),
		FormFactor:   lookup(formFactors, s.u8(0x0e)),
		Type:         lookup(memoryTypes, s.u8(0x12)),
		Manufacturer: s.str(0x17), Serial: s.str(0x18), PartNumber: s.str(0x1a),
	}
	if w := s.u16(0x08); w != 0xffff {
		m.TotalWidth = int(w)
	}
	if w := s.u16(0x0a); w != 0xffff {
		m.DataWidth = int(w)
	}
	switch size := s.u16(0x0c); {
	case size == 0:
		m.SizeBytes = 0
	case size == 0xffff:
		m.SizeBytes = -1
	case size == 0x7fff && s.has(0x1c, 4):
		// Extended size: bits 30:0 in MiB.
		m.SizeBytes = int64(s.u32(0x1c)&0x7fffffff) << 20
	case size&0x8000 != 0:
		m.SizeBytes = int64(size&0x7fff) << 10 // KiB granularity
	default:
		m.SizeBytes = int64(size) << 20
	}
	speed := func(wordOff, extOff int) int {
		v := int(s.u16(wordOff))
		if v == 0xffff && s.has(extOff, 4) {
			v = int(s.u32(extOff) & 0x7fffffff)
		}
		return v
	}
	m.SpeedMTs = speed(0x15, 0x54)
	if s.has(0x20, 2) {
		m.ConfiguredMT = speed(0x20, 0x58)
	}
	return m
}

func lookup(names map[uint8]string, v uint8) string {
	if n, ok := names[v]; ok {
		return n
	}
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("0x%02x", v)
}

var formFactors = map[uint8]string{
	0x01: "Other", 0x02: "Unknown", 0x03: "SIMM", 0x04: "SIP", 0x05: "Chip", 0x06: "DIP", 0x07: "ZIP",
	0x08: "Proprietary Card", 0x09: "DIMM", 0x0a: "TSOP", 0x0b: "Row of chips", 0x0c: "RIMM",
	0x0d: "SODIMM", 0x0e: "SRIMM", 0x0f: "FB-DIMM", 0x10: "Die",
}

var memoryTypes = map[uint8]string{
	0x01: "Other", 0x02: "Unknown", 0x03: "DRAM", 0x04: "EDRAM", 0x05: "VRAM", 0x06: "SRAM", 0x07: "RAM",
	0x08: "ROM", 0x09: "Flash", 0x0a: "EEPROM", 0x0b: "FEPROM", 0x0c: "EPROM", 0x0d: "CDRAM",
	0x0e: "3DRAM", 0x0f: "SDRAM", 0x10: "SGRAM", 0x11: "RDRAM", 0x12: "DDR", 0x13: "DDR2",
	0x14: "DDR2 FB-DIMM", 0x18: "DDR3", 0x19: "FBD2", 0x1a: "DDR4", 0x1b: "LPDDR", 0x1c: "LPDDR2",
	0x1d: "LPDDR3", 0x1e: "LPDDR4", 0x1f: "Logical non-volatile device", 0x20: "HBM", 0x21: "HBM2",
	0x22: "DDR5", 0x23: "LPDDR5", 0x24: "HBM3",
}

// EntryPoint is the decoded SMBIOS entry point structure
// (/sys/firmware/dmi/tables/smbios_entry_point).
type EntryPoint struct {
	// Version is "major.minor[.docrev]".
	Version string `json:"version"`
}

// ParseEntryPoint decodes a 32-bit ("_SM_") or 64-bit ("_SM3_") entry point.
func ParseEntryPoint(b []byte) (EntryPoint, error) {
	switch {
	case len(b) >= 0x18 && bytes.HasPrefix(b, []byte("_SM3_")):
		return EntryPoint{Version: fmt.Sprintf("%d.%d.%d", b[7], b[8], b[9])}, nil
	case len(b) >= 0x1f && bytes.HasPrefix(b, []byte("_SM_")):
		return EntryPoint{Version: fmt.Sprintf("%d.%d", b[6], b[7])}, nil
	}
	return EntryPoint{}, errors.New("smbios: no _SM_ or _SM3_ anchor in entry point")
}
