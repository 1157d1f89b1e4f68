package inventory

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
)

// NVMeProber runs NVMe admin commands on a controller ("nvme0").
type NVMeProber interface {
	// NVMeIdentify returns the 4096-byte Identify Controller data.
	NVMeIdentify(ctrl string) ([]byte, error)
	// NVMeSMARTLog returns the 512-byte SMART / Health Information log page.
	NVMeSMARTLog(ctrl string) ([]byte, error)
}

// ATAProber runs ATA commands on a SATA disk ("sda") through SCSI ATA
// PASS-THROUGH.
type ATAProber interface {
	// ATAIdentify returns the 512-byte IDENTIFY DEVICE data.
	ATAIdentify(disk string) ([]byte, error)
	// ATASMARTStatus runs SMART RETURN STATUS: true when the drive reports
	// no threshold exceeded.
	ATASMARTStatus(disk string) (bool, error)
	// ATASMARTData returns the 512-byte SMART READ DATA page.
	ATASMARTData(disk string) ([]byte, error)
}

// ErrUnsupported is returned by probers for a device that does not speak the
// command set (ENOTTY, EINVAL, a SCSI disk that is not ATA).
var ErrUnsupported = errors.New("command not supported by the device")

// NVMeController is the decoded part of Identify Controller.
type NVMeController struct {
	VendorID uint16 `json:"vendor_id"`
	Serial   string `json:"serial"`
	Model    string `json:"model"`
	Firmware string `json:"firmware"`
	// CapacityBytes is TNVMCAP, 0 when the controller does not report it.
	CapacityBytes float64 `json:"capacity_bytes"`
	Namespaces    uint32  `json:"namespaces"`
}

// ParseNVMeIdentify decodes Identify Controller data (CNS 01h).
func ParseNVMeIdentify(b []byte) (NVMeController, error) {
	if len(b) < 4096 {
		return NVMeController{}, fmt.Errorf("NVMe identify data is %d bytes, want 4096", len(b))
	}
	cap128 := new(big.Int).SetBytes(reverse(b[280:296]))
	capf, _ := new(big.Float).SetInt(cap128).Float64()
	return NVMeController{
		VendorID:      binary.LittleEndian.Uint16(b[0:]),
		Serial:        asciiField(b[4:24]),
		Model:         asciiField(b[24:64]),
		Firmware:      asciiField(b[64:72]),
		CapacityBytes: capf,
		Namespaces:    binary.LittleEndian.Uint32(b[516:]),
	}, nil
}

// ParseNVMeSMART decodes the SMART / Health Information log (LID 02h). The
// overall health is FAILED when any critical warning bit is set, as
// smartctl reports it.
func ParseNVMeSMART(b []byte) (SMART, error) {
	if len(b) < 512 {
		return SMART{}, fmt.Errorf("NVMe SMART log is %d bytes, want 512", len(b))
	}
	u128 := func(off int) int64 {
		lo, hi := binary.LittleEndian.Uint64(b[off:]), binary.LittleEndian.Uint64(b[off+8:])
		if hi != 0 || lo > math.MaxInt64 {
			return math.MaxInt64
		}
		return int64(lo)
	}
	s := SMART{Health: "PASSED", Counters: map[string]int64{
		"critical_warning":  int64(b[0]),
		"available_spare":   int64(b[3]),
		"percentage_used":   int64(b[5]),
		"power_on_hours":    u128(128),
		"unsafe_shutdowns":  u128(144),
		"media_errors":      u128(160),
		"error_log_entries": u128(176),
	}}
	if k := binary.LittleEndian.Uint16(b[1:]); k > 0 {
		s.Counters["temperature_c"] = int64(k) - 273
	}
	if b[0] != 0 {
		s.Health = "FAILED"
	}
	return s, nil
}

// ATAIdentity is the decoded part of IDENTIFY DEVICE.
type ATAIdentity struct {
	Serial   string `json:"serial"`
	Model    string `json:"model"`
	Firmware string `json:"firmware"`
	// Sectors is the addressable capacity in logical sectors.
	Sectors      uint64 `json:"sectors"`
	LogicalBytes int    `json:"logical_bytes"`
	// RPM: 1 means solid state, 0 unknown.
	RPM          int    `json:"rpm"`
	WWN          string `json:"wwn,omitempty"`
	SMARTSupport bool   `json:"smart_supported"`
	SMARTEnabled bool   `json:"smart_enabled"`
}

// ParseATAIdentify decodes IDENTIFY DEVICE data (words are little-endian;
// strings hold two characters per word, high byte first).
func ParseATAIdentify(b []byte) (ATAIdentity, error) {
	if len(b) < 512 {
		return ATAIdentity{}, fmt.Errorf("ATA identify data is %d bytes, want 512", len(b))
	}
	w := func(i int) uint16 { return binary.LittleEndian.Uint16(b[2*i:]) }
	str := func(from, to int) string {
		var s []byte
		for i := from; i <= to; i++ {
			s = append(s, byte(w(i)>>8), byte(w(i)))
		}
		return asciiField(s)
	}
	id := ATAIdentity{
		Serial: str(10, 19), Firmware: str(23, 26), Model: str(27, 46),
		LogicalBytes: 512,
		SMARTSupport: w(82)&1 != 0 && w(82) != 0xffff,
		SMARTEnabled: w(85)&1 != 0 && w(85) != 0xffff,
	}
	if w(83)&(1<<10) != 0 {
		id.Sectors = uint64(w(100)) | uint64(w(101))<<16 | uint64(w(102))<<32 | uint64(w(103))<<48
	} else {
		id.Sectors = uint64(w(60)) | uint64(w(61))<<16
	}
	if ss := w(106); ss&0xc000 == 0x4000 && ss&(1<<12) != 0 {
		if words := uint32(w(117)) | uint32(w(118))<<16; words >= 256 {
			id.LogicalBytes = int(words) * 2
		}
	}
	switch r := w(217); {
	case r == 1:
		id.RPM = 1
	case r >= 0x0401 && r <= 0xfffe:
		id.RPM = int(r)
	}
	if w(87)&(1<<8) != 0 && w(87)&0xc000 == 0x4000 {
		id.WWN = fmt.Sprintf("%04x%04x%04x%04x", w(108), w(109), w(110), w(111))
	}
	return id, nil
}

// ataAttributes names the SMART attributes kiln keeps.
var ataAttributes = map[byte]string{
	5:   "reallocated_sectors",
	9:   "power_on_hours",
	187: "reported_uncorrectable",
	194: "temperature_c",
	197: "pending_sectors",
	198: "offline_uncorrectable",
	199: "udma_crc_errors",
}

// ParseATASMART decodes SMART READ DATA's attribute table (30 entries of
// 12 bytes from offset 2) into counters, with the overall health from
// SMART RETURN STATUS.
func ParseATASMART(data []byte, passed bool) (SMART, error) {
	if len(data) < 362 {
		return SMART{}, fmt.Errorf("ATA SMART data is %d bytes, want 512", len(data))
	}
	s := SMART{Health: "PASSED", Counters: map[string]int64{}}
	if !passed {
		s.Health = "FAILED"
	}
	for i := 0; i < 30; i++ {
		e := data[2+12*i : 2+12*(i+1)]
		name, ok := ataAttributes[e[0]]
		if !ok || e[0] == 0 {
			continue
		}
		raw := e[5:11]
		var v int64
		switch e[0] {
		case 194: // temperature: the low byte; the rest holds min/max
			v = int64(raw[0])
		case 9: // power-on hours: low 32 bits; some drives add minutes above
			v = int64(binary.LittleEndian.Uint32(raw))
		default:
			for j := 5; j >= 0; j-- {
				v = v<<8 | int64(raw[j])
			}
		}
		s.Counters[name] = v
	}
	return s, nil
}

// asciiField trims an identify string field (space-padded, maybe NULs).
func asciiField(b []byte) string {
	s := make([]byte, 0, len(b))
	for _, c := range b {
		if c >= 0x20 && c < 0x7f {
			s = append(s, c)
		}
	}
	return strings.TrimSpace(string(s))
}

func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[len(b)-1-i] = b[i]
	}
	return out
}
