package inventory

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseNVMeIdentify(t *testing.T) {
	got, err := ParseNVMeIdentify(nvmeIdentifyBlob(0x144d, "S4EVNF0M123456", "SAMSUNG MZVLB512HBJQ-00000", "EXA7301Q", 512110190592, 1))
	if err != nil {
		t.Fatal(err)
	}
	want := NVMeController{VendorID: 0x144d, Serial: "S4EVNF0M123456", Model: "SAMSUNG MZVLB512HBJQ-00000",
		Firmware: "EXA7301Q", CapacityBytes: 512110190592, Namespaces: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseNVMeIdentify (-want +got):\n%s", diff)
	}
	if _, err := ParseNVMeIdentify(make([]byte, 100)); err == nil {
		t.Error("ParseNVMeIdentify(100 bytes) succeeded, want an error")
	}
}

func TestParseNVMeSMART(t *testing.T) {
	for _, tc := range []struct {
		name   string
		h      nvmeHealth
		health string
		want   map[string]int64
	}{
		{"healthy", nvmeHealth{tempK: 310, spare: 100, used: 3, hours: 1000, unsafe: 4, media: 0, el: 12}, "PASSED",
			map[string]int64{"critical_warning": 0, "available_spare": 100, "percentage_used": 3, "power_on_hours": 1000,
				"unsafe_shutdowns": 4, "media_errors": 0, "error_log_entries": 12, "temperature_c": 37}},
		{"spare below threshold", nvmeHealth{critical: 0x01, tempK: 300, spare: 5, media: 2}, "FAILED",
			map[string]int64{"critical_warning": 1, "available_spare": 5, "percentage_used": 0, "power_on_hours": 0,
				"unsafe_shutdowns": 0, "media_errors": 2, "error_log_entries": 0, "temperature_c": 27}},
		{"no temperature", nvmeHealth{}, "PASSED",
			map[string]int64{"critical_warning": 0, "available_spare": 0, "percentage_used": 0, "power_on_hours": 0,
				"unsafe_shutdowns": 0, "media_errors": 0, "error_log_entries": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseNVMeSMART(nvmeSMARTBlob(tc.h))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(SMART{Health: tc.health, Counters: tc.want}, got); diff != "" {
				t.Errorf("ParseNVMeSMART (-want +got):\n%s", diff)
			}
		})
	}
	huge := nvmeSMARTBlob(nvmeHealth{})
	huge[168] = 1 // media errors ≥ 2^64
	if s, _ := ParseNVMeSMART(huge); s.Counters["media_errors"] != math.MaxInt64 {
		t.Errorf("128-bit media errors = %d, want saturated at MaxInt64", s.Counters["media_errors"])
	}
}

func TestParseATAIdentify(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   ataID
		want ATAIdentity
	}{
		{"SSD with 48-bit LBA", ataID{serial: "S6KHNA0T123456", fw: "JXTC404Q", model: "SAMSUNG MZ7L3480HCHQ-00A07",
			sectors: 937703088, rpm: 1, wwn: [4]uint16{0x5002, 0x538f, 0x3123, 0x4567}, smart: true},
			ATAIdentity{Serial: "S6KHNA0T123456", Model: "SAMSUNG MZ7L3480HCHQ-00A07", Firmware: "JXTC404Q",
				Sectors: 937703088, LogicalBytes: 512, RPM: 1, WWN: "5002538f31234567", SMARTSupport: true, SMARTEnabled: true}},
		{"odd-length strings", ataID{serial: "ABC", fw: "1", model: "QEMU HARDDISK", sectors: 2097152},
			ATAIdentity{Serial: "ABC", Model: "QEMU HARDDISK", Firmware: "1", Sectors: 2097152, LogicalBytes: 512, WWN: "0000000000000000"}},
		{"7200 rpm", ataID{model: "ST2000NM000A-2J2100", sectors: 3907029168, rpm: 7200, smart: true},
			ATAIdentity{Model: "ST2000NM000A-2J2100", Sectors: 3907029168, LogicalBytes: 512, RPM: 7200, WWN: "0000000000000000",
				SMARTSupport: true, SMARTEnabled: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseATAIdentify(ataIdentifyBlob(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseATAIdentify (-want +got):\n%s", diff)
			}
		})
	}
	// A 4Kn drive reports its logical sector size in words 117-118.
	b := ataIdentifyBlob(ataID{model: "4Kn", sectors: 1 << 20})
	b[2*106], b[2*106+1] = 0x00, 0x50 // valid + logical sector size present
	b[2*117], b[2*117+1] = 0x00, 0x08 // 2048 words
	if id, _ := ParseATAIdentify(b); id.LogicalBytes != 4096 {
		t.Errorf("4Kn logical sector = %d bytes, want 4096", id.LogicalBytes)
	}
	// Without 48-bit support the 28-bit capacity in words 60-61 counts.
	b = ataIdentifyBlob(ataID{model: "old", sectors: 1000})
	b[2*83+1] &^= 0x04
	if id, _ := ParseATAIdentify(b); id.Sectors != 1000 {
		t.Errorf("28-bit capacity = %d sectors, want 1000", id.Sectors)
	}
	if _, err := ParseATAIdentify(make([]byte, 10)); err == nil {
		t.Error("ParseATAIdentify(10 bytes) succeeded, want an error")
	}
}

func TestParseATASMART(t *testing.T) {
	data := ataSMARTBlob(ataAttr{1, 123}, ataAttr{5, 16}, ataAttr{9, 0x0003_0000_4a38}, ataAttr{194, 0x0028_0016_0021},
		ataAttr{197, 8}, ataAttr{198, 2}, ataAttr{199, 1})
	got, err := ParseATASMART(data, false)
	if err != nil {
		t.Fatal(err)
	}
	want := SMART{Health: "FAILED", Counters: map[string]int64{"reallocated_sectors": 16, "power_on_hours": 0x4a38,
		"temperature_c": 0x21, "pending_sectors": 8, "offline_uncorrectable": 2, "udma_crc_errors": 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseATASMART (-want +got):\n%s", diff)
	}
	if _, err := ParseATASMART(make([]byte, 100), true); err == nil {
		t.Error("ParseATASMART(100 bytes) succeeded, want an error")
	}
}

func TestATARegisters(t *testing.T) {
	desc := make([]byte, 22)
	desc[0], desc[7] = 0x72, 14
	copy(desc[8:], []byte{0x09, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x4f, 0x00, 0xc2, 0x00, 0x50})
	if regs, st, ok := ataRegisters(desc); !ok || regs != [2]byte{0x4f, 0xc2} || st != 0x50 {
		t.Errorf("ataRegisters(descriptor) = %x %x %v, want 4f c2, status 50", regs, st, ok)
	}
	fixed := make([]byte, 18)
	fixed[0], fixed[4], fixed[10], fixed[11] = 0x70, 0x51, 0xf4, 0x2c
	if regs, st, ok := ataRegisters(fixed); !ok || regs != [2]byte{0xf4, 0x2c} || st != 0x51 {
		t.Errorf("ataRegisters(fixed) = %x %x %v, want f4 2c, status 51", regs, st, ok)
	}
	if _, _, ok := ataRegisters([]byte{0x72, 0, 0}); ok {
		t.Error("ataRegisters(short) ok, want not ok")
	}
	if k := senseKey([]byte{0x72, 0x05, 0x20}); k != 5 {
		t.Errorf("senseKey(descriptor ILLEGAL REQUEST) = %d, want 5", k)
	}
}

// TestDevicesUnsupported sends the real ioctls to a regular file, which
// answers ENOTTY: the prober must call that unsupported, not fail.
func TestDevicesUnsupported(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sdz"), make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	d := Devices{Dir: dir}
	if _, err := d.ATAIdentify("sdz"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("ATAIdentify(regular file) error = %v, want ErrUnsupported", err)
	}
	if _, err := d.NVMeIdentify("sdz"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("NVMeIdentify(regular file) error = %v, want ErrUnsupported", err)
	}
	if _, err := d.ATASMARTStatus("sdz"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("ATASMARTStatus(regular file) error = %v, want ErrUnsupported", err)
	}
	if _, err := d.NVMeSMARTLog("missing"); err == nil || errors.Is(err, ErrUnsupported) {
		t.Errorf("NVMeSMARTLog(missing node) error = %v, want an open error", err)
	}
	if _, err := d.ATAIdentify("../etc/passwd"); err == nil {
		t.Error("ATAIdentify(../etc/passwd) succeeded, want a refusal of path names")
	}
}
