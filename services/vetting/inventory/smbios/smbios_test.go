package smbios_test

import (
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/services/vetting/inventory/smbios"
	"kiln.dev/kiln/services/vetting/inventory/smbios/smbiostest"
)

func TestDecodeQEMU(t *testing.T) {
	structs, err := smbios.Parse(smbiostest.QEMU(2048, 2))
	if err != nil {
		t.Fatalf("Parse(QEMU table) error: %v", err)
	}
	got := smbios.Decode(structs)
	want := smbios.Table{
		BIOS:   &smbios.BIOS{Vendor: "SeaBIOS", Version: "1.16.2-debian-1.16.2-1", ReleaseDate: "04/01/2014", Release: "0.0"},
		System: &smbios.System{Manufacturer: "QEMU", Product: "Standard PC (Q35 + ICH9, 2009)", Version: "pc-q35-7.2"},
		Processors: []smbios.Processor{{Socket: "CPU 0", Manufacturer: "QEMU", Version: "pc-q35-7.2", Populated: true,
			MaxMHz: 2000, CurrentMHz: 2000, Cores: 2, EnabledCores: 2, Threads: 2}},
		Memory: []smbios.MemoryDevice{{Locator: "DIMM 0", SizeBytes: 2 << 30, FormFactor: "DIMM", Type: "RAM",
			Manufacturer: "QEMU"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Decode(QEMU table) mismatch (-want +got):\n%s", diff)
	}
	if n := len(structs); n != 9 {
		t.Errorf("Parse(QEMU table) = %d structures, want 9 (8 + end of table)", n)
	}
}

// qemuCapture is the DMI table a real QEMU 7.2 q35 guest exposed, captured
// with the inventory's internal/capture TestCaptureQEMU.
const qemuCapture = "../testdata/qemu/root/sys/firmware/dmi/tables/DMI"

// TestRealQEMUTable checks the parser on QEMU's own table and the QEMU
// builder against it: both must decode the same.
func TestRealQEMUTable(t *testing.T) {
	b, err := os.ReadFile(qemuCapture)
	if err != nil {
		t.Skipf("no captured QEMU table: %v", err)
	}
	real, err := smbios.Parse(b)
	if err != nil {
		t.Fatalf("Parse(QEMU's table) error: %v", err)
	}
	built, err := smbios.Parse(smbiostest.QEMU(2048, 2))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(smbios.Decode(real), smbios.Decode(built)); diff != "" {
		t.Errorf("smbiostest.QEMU decodes differently from QEMU's table (-real +built):\n%s", diff)
	}
	ep, err := os.ReadFile("../testdata/qemu/root/sys/firmware/dmi/tables/smbios_entry_point")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := smbios.ParseEntryPoint(ep); err != nil || e.Version != "2.8" {
		t.Errorf("ParseEntryPoint(QEMU's) = %+v, %v; want 2.8", e, err)
	}
}

func TestDecodeServer(t *testing.T) {
	structs, err := smbios.Parse(smbiostest.Server())
	if err != nil {
		t.Fatalf("Parse(server table) error: %v", err)
	}
	got := smbios.Decode(structs)
	if want := "4c4c4544-0058-5110-8039-b7c04f4b3533"; got.System.UUID != want {
		t.Errorf("system UUID = %q, want %q (little-endian first three fields)", got.System.UUID, want)
	}
	if len(got.Processors) != 2 || got.Processors[1].Threads != 64 || got.Processors[1].Cores != 32 {
		t.Errorf("processors = %+v, want 2 × 32 cores / 64 threads", got.Processors)
	}
	var populated int
	var total int64
	for _, m := range got.Memory {
		if m.Populated() {
			populated++
			total += m.SizeBytes
			if !m.ECC() || m.Type != "DDR4" || m.SpeedMTs != 3200 || m.PartNumber != "M393A4K40EB3-CWE" {
				t.Errorf("DIMM %s = %+v, want ECC DDR4-3200 M393A4K40EB3-CWE", m.Locator, m)
			}
		}
	}
	if populated != 8 || total != 256<<30 {
		t.Errorf("populated DIMMs = %d totalling %d bytes, want 8 totalling 256 GiB", populated, total)
	}
}

func TestMemorySizeEncodings(t *testing.T) {
	for _, tc := range []struct {
		name string
		size uint16
		ext  uint32
		want int64
	}{
		{"empty slot", 0, 0, 0},
		{"unknown", 0xffff, 0, -1},
		{"MiB granularity", 16384, 0, 16 << 30},
		{"KiB granularity", 0x8000 | 512, 0, 512 << 10},
		{"extended size", 0x7fff, 65536, 64 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := smbiostest.MemoryStructure(1, smbiostest.Memory{Locator: "X"})
			s.Formatted[0x0c], s.Formatted[0x0d] = byte(tc.size), byte(tc.size>>8)
			s.Formatted[0x1c], s.Formatted[0x1d], s.Formatted[0x1e], s.Formatted[0x1f] =
				byte(tc.ext), byte(tc.ext>>8), byte(tc.ext>>16), byte(tc.ext>>24)
			structs, err := smbios.Parse(smbios.Encode([]smbios.Structure{s}))
			if err != nil {
				t.Fatal(err)
			}
			if got := smbios.Decode(structs).Memory[0].SizeBytes; got != tc.want {
				t.Errorf("size field %#x ext %d = %d bytes, want %d", tc.size, tc.ext, got, tc.want)
			}
		})
	}
}

func TestShortStructuresDecodeToZero(t *testing.T) {
	// An SMBIOS 2.0-era processor structure (length 0x1a) has no core counts.
	s := smbiostest.ProcessorStructure(1, smbiostest.Processor{Socket: "CPU0", Cores: 8, Threads: 16})
	s.Formatted = s.Formatted[:0x1a]
	structs, err := smbios.Parse(smbios.Encode([]smbios.Structure{s}))
	if err != nil {
		t.Fatal(err)
	}
	p := smbios.Decode(structs).Processors[0]
	if p.Socket != "CPU0" || p.Cores != 0 || p.Threads != 0 {
		t.Errorf("short processor = %+v, want socket CPU0 and no counts", p)
	}
}

func TestParseDamage(t *testing.T) {
	good := smbiostest.QEMU(1024, 1)
	for _, tc := range []struct {
		name    string
		table   []byte
		wantN   int
		wantErr bool
	}{
		{"empty", nil, 0, false},
		{"zero padding after table", append(append([]byte(nil), good...), 0, 0, 0), 9, false},
		{"cut in header", good[:2], 0, true},
		{"cut in formatted area", good[:10], 0, true},
		{"strings never terminated", good[:0x1a+5], 0, true},
		{"length below header", []byte{1, 2, 0, 0, 0, 0}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := smbios.Parse(tc.table)
			if (err != nil) != tc.wantErr || len(got) != tc.wantN {
				t.Errorf("Parse(%s) = %d structures, %v; want %d, error %v", tc.name, len(got), err, tc.wantN, tc.wantErr)
			}
		})
	}
	if _, err := smbios.Parse(good[:10]); !errors.Is(err, smbios.ErrTruncated) {
		t.Errorf("Parse(truncated) error = %v, want ErrTruncated", err)
	}
}

func TestEntryPoint(t *testing.T) {
	ep, err := smbios.ParseEntryPoint(smbiostest.EntryPoint3(3, 3, 0, 100))
	if err != nil || ep.Version != "3.3.0" {
		t.Errorf("ParseEntryPoint(_SM3_ 3.3.0) = %+v, %v; want 3.3.0", ep, err)
	}
	legacy := make([]byte, 0x1f)
	copy(legacy, "_SM_")
	legacy[6], legacy[7] = 2, 8
	if ep, err := smbios.ParseEntryPoint(legacy); err != nil || ep.Version != "2.8" {
		t.Errorf("ParseEntryPoint(_SM_ 2.8) = %+v, %v; want 2.8", ep, err)
	}
	if _, err := smbios.ParseEntryPoint([]byte("junk")); err == nil {
		t.Error("ParseEntryPoint(junk) succeeded, want error")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(smbiostest.QEMU(2048, 2))
	f.Add(smbiostest.Server())
	if b, err := os.ReadFile(qemuCapture); err == nil {
		f.Add(b)
	}
	f.Add([]byte{4, 0x30, 0, 0})
	f.Add([]byte{17, 5, 0, 0, 0, 'a', 0, 0})
	f.Fuzz(func(t *testing.T, table []byte) {
		structs, _ := smbios.Parse(table)
		tab := smbios.Decode(structs) // must not panic on any structure
		_ = tab
		// Whatever parsed must survive an encode/parse round trip.
		again, err := smbios.Parse(smbios.Encode(structs))
		if err != nil {
			t.Fatalf("re-parsing encoded structures: %v", err)
		}
		n := len(structs)
		if n == 0 || structs[n-1].Type != smbios.TypeEndOfTable {
			n++ // Encode appends an end-of-table structure
		}
		if len(again) != n {
			t.Fatalf("round trip: %d structures, want %d", len(again), n)
		}
	})
}
