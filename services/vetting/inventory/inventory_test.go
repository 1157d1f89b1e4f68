package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/services/vetting/spec"
)

var (
	update         = flag.Bool("update", false, "rewrite testdata/*.golden.json")
	updateFixtures = flag.Bool("update-fixtures", false, "rewrite the generated fixture tree testdata/server")
)

// fileProber answers NVMe and ATA commands from the files a fixture keeps in
// its probe/ directory: <name>.nvme-identify, .nvme-smart, .ata-identify,
// .ata-smart and .ata-smart-status ("passed" or "failed"). A missing file is
// a device that does not speak the command set.
type fileProber string

func (p fileProber) read(name, kind string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(string(p), name+"."+kind))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrUnsupported
	}
	return b, err
}

func (p fileProber) NVMeIdentify(c string) ([]byte, error) { return p.read(c, "nvme-identify") }
func (p fileProber) NVMeSMARTLog(c string) ([]byte, error) { return p.read(c, "nvme-smart") }
func (p fileProber) ATAIdentify(d string) ([]byte, error)  { return p.read(d, "ata-identify") }
func (p fileProber) ATASMARTData(d string) ([]byte, error) { return p.read(d, "ata-smart") }
func (p fileProber) ATASMARTStatus(d string) (bool, error) {
	b, err := p.read(d, "ata-smart-status")
	return strings.TrimSpace(string(b)) == "passed", err
}

func golden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (go test -update creates it): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got; go test -update rewrites):\n%s", name, diff)
	}
}

// readTree lists a tree as path → content ("->target" for links).
func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			out[rel] = "->" + target
			return err
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			out[rel] = string(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading tree %s: %v", root, err)
	}
	return out
}

func TestFixtures(t *testing.T) {
	for name, gen := range generators {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", name)
			if *updateFixtures {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				gen(t, filepath.Join(dir, "root"), "../probe")
				return
			}
			tmp := filepath.Join(t.TempDir(), name)
			gen(t, filepath.Join(tmp, "root"), "../probe")
			want, got := readTree(t, tmp), readTree(t, dir)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("testdata/%s differs from its generator (-generator +testdata; go test -update-fixtures rewrites):\n%s", name, diff)
			}
		})
	}
}

// collectTree runs Collect on a fixture tree with its file prober.
func collectTree(t *testing.T, name string) Inventory {
	t.Helper()
	root := filepath.Join("testdata", name, "root")
	if _, err := os.Stat(root); err != nil {
		t.Skipf("no fixture tree %s (go test -capture makes testdata/host; internal/capture -capture-qemu makes testdata/qemu): %v", root, err)
	}
	p := fileProber(filepath.Join("testdata", name, "probe"))
	inv, err := Collect(context.Background(), Config{Root: root, NVMe: p, ATA: p})
	if err != nil {
		t.Fatalf("Collect(%s) error: %v", root, err)
	}
	return inv
}

// TestGolden collects every fixture tree — the generated server, and the
// captures of a QEMU q35 machine and of a Firecracker VM — and compares the
// inventory and its facts with golden JSON.
func TestGolden(t *testing.T) {
	for _, name := range []string{"server", "qemu", "host"} {
		t.Run(name, func(t *testing.T) {
			inv := collectTree(t, name)
			golden(t, name+".golden.json", struct {
				Inventory Inventory  `json:"inventory"`
				Facts     spec.Facts `json:"facts"`
			}{inv, inv.Facts()})
		})
	}
}

func TestServerInventory(t *testing.T) {
	inv := collectTree(t, "server")
	if len(inv.Warnings) != 0 {
		t.Errorf("Collect(server) warnings = %q, want none", inv.Warnings)
	}
	if got, want := [3]int{inv.CPU.Sockets, inv.CPU.Cores, inv.CPU.Threads}, [3]int{2, 16, 32}; got != want {
		t.Errorf("CPU sockets/cores/threads = %v, want %v", got, want)
	}
	if p := inv.CPU.Packages[1]; p.Socket != "CPU2" || p.MaxMHz != 3600 {
		t.Errorf("package 1 = %+v, want socket CPU2 (from SMBIOS) at 3600 MHz (from cpufreq)", p)
	}
	var names []string
	for _, d := range inv.Disks {
		names = append(names, d.Name+"/"+d.Transport)
	}
	if diff := cmp.Diff([]string{"nvme0n1/nvme", "sda/ata", "sdb/ata", "sdc/usb"}, names); diff != "" {
		t.Errorf("disks (-want +got):\n%s", diff)
	}
	sda := inv.Disks[1]
	if sda.Model != "SAMSUNG MZ7L3480HCHQ-00A07" || sda.Serial != "S6KHNA0T123456" || sda.Firmware != "JXTC404Q" {
		t.Errorf("sda = %+v, want the untruncated model, serial and firmware from ATA IDENTIFY", sda)
	}
	if sdb := inv.Disks[2]; sdb.RPM != 7200 || !sdb.Rotational || sdb.SMART.Counters["pending_sectors"] != 8 {
		t.Errorf("sdb = %+v, want a 7200 rpm disk with 8 pending sectors", sdb)
	}
	if n := inv.Disks[0]; n.Controller != "nvme0" || n.PCI != "0000:b1:00.0" || n.SMART.Counters["temperature_c"] != 36 {
		t.Errorf("nvme0n1 = %+v, want controller nvme0 on 0000:b1:00.0 at 36 °C", n)
	}
	var nics []string
	for _, n := range inv.NICs {
		nics = append(nics, n.Name+"/"+n.Driver)
	}
	if diff := cmp.Diff([]string{"eno1/tg3", "eno2/tg3", "ens2f0/i40e", "ens2f1/i40e", "idrac/cdc_ether"}, nics); diff != "" {
		t.Errorf("NICs (-want +got; lo and bond0 are virtual):\n%s", diff)
	}
	f := inv.Facts()
	for name, want := range map[string]spec.Value{
		"memory.installed_bytes": spec.Number(256<<30, spec.UnitBytes),
		"memory.dimms":           spec.Int(8),
		"memory.ecc":             spec.Bool(true),
		"disks.count":            spec.Int(3),
		"nics.speed_mbps":        spec.Numbers(spec.UnitMbps, 1000, 10000, 10000, 0),
		"pcie.degraded_links":    spec.Int(2),
		"disk.sdb.smart_health":  spec.String("PASSED"),
	} {
		if diff := cmp.Diff(want, f[name]); diff != "" {
			t.Errorf("fact %s (-want +got):\n%s", name, diff)
		}
	}
}

// TestSpecAgainstServer runs a realistic expected spec against the server
// fixture end to end.
func TestSpecAgainstServer(t *testing.T) {
	s, err := spec.Parse([]byte(`
expect:
  - fact: system.product
    exact: PowerEdge R650
  - fact: memory.installed_bytes
    min: 512GiB
  - fact: cpu.model
    regex: 'Xeon\(R\) Silver 4309Y'
  - fact: nics.drivers
    contains: [i40e, i40e, tg3, tg3]
  - fact: pcie.degraded_links
    max: 0
    severity: degraded
  - fact: disks.smart_health
    in: [PASSED]
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range spec.Diff(s, collectTree(t, "server").Facts()) {
		got = append(got, string(r.Status)+" "+r.Problem)
	}
	want := []string{
		"match ",
		"mismatch memory.installed_bytes: expected ≥ 512 GiB, got 256 GiB",
		"match ",
		"match ",
		"mismatch pcie.degraded_links: expected ≤ 0, got 2",
		"match ",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("spec diff against the server (-want +got):\n%s", diff)
	}
}

func TestCollectEmptyRoot(t *testing.T) {
	inv, err := Collect(context.Background(), Config{Root: t.TempDir()})
	if err != nil {
		t.Fatalf("Collect(empty root) error: %v", err)
	}
	if len(inv.Warnings) < 3 || len(inv.Disks) != 0 || inv.Disks == nil {
		t.Errorf("Collect(empty root) = %+v, want empty (non-nil) lists and warnings for SMBIOS, CPU and memory", inv)
	}
	if _, err := Collect(canceled(), Config{Root: t.TempDir()}); !errors.Is(err, context.Canceled) {
		t.Errorf("Collect(canceled ctx) error = %v, want context.Canceled", err)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestCollectLive runs on this machine's own /sys and /proc.
func TestCollectLive(t *testing.T) {
	inv, err := Collect(context.Background(), Config{Root: "/", NVMe: Devices{Dir: "/dev"}, ATA: Devices{Dir: "/dev"}})
	if err != nil {
		t.Fatal(err)
	}
	if inv.CPU.Threads < 1 || inv.Memory.UsableBytes < 64<<20 {
		t.Errorf("Collect(/) = %d threads, %d bytes of memory; want at least 1 and 64 MiB", inv.CPU.Threads, inv.Memory.UsableBytes)
	}
	t.Logf("live inventory: %d CPUs %q, %d disks, %d NICs, warnings %q", inv.CPU.Threads, inv.CPU.Model, len(inv.Disks), len(inv.NICs), inv.Warnings)
}

func TestRealpath(t *testing.T) {
	inv := reader{DirFS(filepath.Join("testdata", "server", "root"))}
	for in, want := range map[string]string{
		"sys/class/net/eno1/device":    "sys/devices/pci0000:00/0000:00:1c.0/0000:04:00.0",
		"sys/block/sda":                "sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda",
		"sys/block/nvme0n1/device":     "sys/devices/pci0000:b0/0000:b0:02.0/0000:b1:00.0/nvme/nvme0",
		"sys/class/net/lo/../lo/mtu":   "sys/devices/virtual/net/lo/mtu",
		"sys/no/such/path":             "sys/no/such/path",
		"sys/bus/pci/devices/../../..": "sys",
	} {
		if got, err := inv.realpath(in); err != nil || got != want {
			t.Errorf("realpath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{
		"0": {0}, "0-3": {0, 1, 2, 3}, "0-1,4,6-7\n": {0, 1, 4, 6, 7}, "": nil, "x": nil, "3-1": nil,
	} {
		if diff := cmp.Diff(want, parseCPUList(in)); diff != "" {
			t.Errorf("parseCPUList(%q) (-want +got):\n%s", in, diff)
		}
	}
}

func TestParseLinkSpeed(t *testing.T) {
	for in, want := range map[string]float64{
		"8.0 GT/s PCIe": 8, "2.5 GT/s": 2.5, "16.0 GT/s PCIe": 16, "Unknown": 0, "": 0, "x GT/s": 0,
	} {
		if got := parseLinkSpeed(in); got != want {
			t.Errorf("parseLinkSpeed(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestSMARTReader reads SMART again through the captured QEMU answers, as
// the storage stage does before and after its load.
func TestSMARTReader(t *testing.T) {
	inv := collectTree(t, "qemu")
	p := fileProber(filepath.Join("testdata", "qemu", "probe"))
	r := SMARTReader{Disks: inv.Disks, NVMe: p, ATA: p}
	for _, tc := range []struct {
		disk, health string
		counter      string
		value        int64
	}{
		{"nvme0n1", "PASSED", "temperature_c", 50},
		{"sda", "PASSED", "reallocated_sectors", 0},
		{"vda", "", "", 0},
		{"nosuch", "", "", 0},
	} {
		s, err := r.SMART(tc.disk)
		switch {
		case err != nil:
			t.Errorf("SMART(%s) error: %v", tc.disk, err)
		case tc.health == "" && s != nil:
			t.Errorf("SMART(%s) = %+v, want none", tc.disk, s)
		case tc.health != "" && (s == nil || s.Health != tc.health || s.Counters[tc.counter] != tc.value):
			t.Errorf("SMART(%s) = %+v, want %s with %s = %d", tc.disk, s, tc.health, tc.counter, tc.value)
		}
	}
}
