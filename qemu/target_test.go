package qemu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/services/vetting/spec"
)

func TestTargetConfig(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed (apt-get install qemu-utils)")
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "target-1")
	nic := NIC{Kind: Dgram, LocalPort: 47001, RemotePort: 47002, MAC: "52:54:00:6b:76:01"}
	tg := Target{Dir: dir, NIC: nic, DiskSizes: []int64{4 << 20, 2 << 20}}
	c, err := tg.Config(ctx)
	if err != nil {
		t.Fatalf("Target.Config() error = %v", err)
	}
	bootNIC := nic
	bootNIC.Boot = true
	want := Config{
		WorkDir: dir, Firmware: UEFI, MemoryMiB: 2048, CPUs: 2, NICs: []NIC{bootNIC}, NoWatchdog: true,
		Extra: []string{"-global", "virtio-net-pci.romfile=", "-device", "virtio-rng-pci"},
		Disks: []Disk{
			{Path: filepath.Join(dir, "disk1.qcow2"), Format: "qcow2", Serial: "kiln-target-1"},
			{Path: filepath.Join(dir, "disk2.qcow2"), Format: "qcow2", Serial: "kiln-target-2"},
		},
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("Target.Config() mismatch (-want +got):\n%s", diff)
	}
	for i, size := range tg.DiskSizes {
		info, err := Inspect(ctx, tg.DiskPath(i))
		if err != nil || info.Format != "qcow2" || info.VirtualSize != size || info.BackingFile != "" {
			t.Errorf("disk %d = %+v, %v, want a blank %d-byte qcow2", i+1, info, err, size)
		}
	}
	// A second power-on keeps the disks (what the target wrote stays).
	fi1, _ := os.Stat(tg.DiskPath(0))
	if _, err := tg.Config(ctx); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(tg.DiskPath(0)); !os.SameFile(fi1, fi2) {
		t.Errorf("Target.Config() replaced an existing disk")
	}
	args, err := Args(c, "/s/serial", "/s/qmp")
	if err != nil {
		t.Fatalf("Args(target config) error = %v", err)
	}
	line := strings.Join(args, " ")
	for _, sub := range []string{"-m 2048", "-accel tcg", "bootindex=1", "virtio-net-pci.romfile=", "OVMF_CODE", "serial=kiln-target-2", "virtio-rng-pci"} {
		if !strings.Contains(line, sub) {
			t.Errorf("target command line lacks %q:\n%s", sub, line)
		}
	}

	if _, err := (Target{NIC: nic}).Config(ctx); !errors.Is(err, ErrConfig) {
		t.Errorf("Target{no Dir}.Config() error = %v, want ErrConfig", err)
	}
	if _, err := (Target{Dir: t.TempDir(), NIC: nic, DiskSizes: []int64{0}}).Config(ctx); !errors.Is(err, ErrConfig) {
		t.Errorf("Target{disk size 0}.Config() error = %v, want ErrConfig", err)
	}
}

// TestTargetExpectedSpec checks the spec against the facts such a target
// has (as the agent would collect them) and that it catches a smaller one.
func TestTargetExpectedSpec(t *testing.T) {
	s, err := spec.Parse([]byte(Target{}.ExpectedSpec()))
	if err != nil {
		t.Fatalf("spec.Parse(ExpectedSpec()) error = %v", err)
	}
	facts := func(threads int, mem float64, disks ...float64) spec.Facts {
		return spec.Facts{
			"system.manufacturer":    spec.String("QEMU"),
			"cpu.threads":            spec.Int(threads),
			"memory.installed_bytes": spec.Number(mem, spec.UnitBytes),
			"disks.count":            spec.Int(len(disks)),
			"disks.size_bytes":       spec.Numbers(spec.UnitBytes, disks...),
			"nics.count":             spec.Int(1),
		}
	}
	tests := []struct {
		name  string
		facts spec.Facts
		fail  []string // facts that must not match
	}{
		{"the target", facts(2, 2<<30, 1<<30, 2<<30), nil},
		{"less memory, one disk", facts(2, 1<<30, 2<<30), []string{"memory.installed_bytes", "disks.count", "disks.size_bytes"}},
		{"one vCPU", facts(1, 2<<30, 2<<30, 1<<30), []string{"cpu.threads"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var failed []string
			for _, r := range spec.Diff(s, tt.facts) {
				if !r.OK() {
					failed = append(failed, r.Fact)
				}
			}
			if diff := cmp.Diff(tt.fail, failed); diff != "" {
				t.Errorf("spec.Diff(ExpectedSpec(), facts) failed items mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
