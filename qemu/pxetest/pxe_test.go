package pxetest

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/qemu/boottest"
)

// Addresses and MACs of the private segment.
const (
	applianceMAC = "52:54:00:6b:6c:20"
	ovmfMAC      = "52:54:00:6b:6c:31"
	biosMAC      = "52:54:00:6b:6c:32"
	// biosROM is Debian's iPXE ROM for QEMU's e1000 (package ipxe-qemu).
	biosROM = "/usr/lib/ipxe/qemu/pxe-e1000.rom"
)

// applianceConfig is the appliance's config: the management NIC (user
// networking) and the provisioning NIC on the segment, served by DHCP,
// TFTP and HTTP boot, with the targets from the hosts file.
const applianceConfig = `hostname: kiln-pxe
network:
  interfaces:
    - name: mgmt0
      mac: ` + qemu.DefaultMgmtMAC + `
      role: management
      addresses: [10.0.2.15/24]
    - name: prov0
      mac: ` + applianceMAC + `
      role: provisioning
      addresses: [10.77.0.1/24]
provisioning:
  domain: pxe.test
  hosts_file: /run/kiln/fw_cfg/hosts.yaml
  subnets:
    - name: pxe
      interface: prov0
      cidr: 10.77.0.0/24
      mode: authoritative
      pool: {start: 10.77.0.100, end: 10.77.0.199}
      lease_time: 1h
`

const hostsFile = `hosts:
  - name: pxe-ovmf
    macs: [` + ovmfMAC + `]
    boot_profile: kernel
    kernel: pxetest/vmlinuz
    cmdline: console=ttyS0,115200
  - name: pxe-bios
    macs: [` + biosMAC + `]
    boot_profile: kernel
    kernel: pxetest/vmlinuz
    cmdline: console=ttyS0,115200
`

// startVM starts a VM whose serial log is kept (and named) when the test fails.
func startVM(t *testing.T, ctx context.Context, name string, cfg qemu.Config) *qemu.VM {
	t.Helper()
	work, err := os.MkdirTemp("", "kiln-pxetest-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	cfg.WorkDir = work
	vm, err := qemu.Start(ctx, cfg, qemu.Options{Logger: boottest.TestLogger(t)})
	if err != nil {
		os.RemoveAll(work)
		t.Fatalf("starting the %s VM: %v", name, err)
	}
	t.Cleanup(func() {
		vm.Close()
		if t.Failed() {
			t.Logf("serial console of the %s VM: %s/serial.log", name, work)
			return
		}
		os.RemoveAll(work)
	})
	return vm
}

func TestPXEBoot(t *testing.T) {
	image := boottest.Image(t)
	if _, err := os.Stat(biosROM); err != nil {
		t.Skipf("tier 4 skipped: %s missing (apt-get install ipxe-qemu)", biosROM)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	dir := t.TempDir()
	configPath, hostsPath := filepath.Join(dir, "kiln.yaml"), filepath.Join(dir, "hosts.yaml")
	for p, s := range map[string]string{configPath: applianceConfig, hostsPath: hostsFile} {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	applianceNIC, targetNIC, err := qemu.L2Pair(applianceMAC, ovmfMAC)
	if err != nil {
		t.Fatal(err)
	}
	appliance := startVM(t, ctx, "appliance", qemu.Config{
		Disks: []qemu.Disk{{Path: boottest.NewOverlay(t, image, "")}},
		Mgmt:  &qemu.Mgmt{HTTPSPort: -1, HTTPPort: -1},
		NICs:  []qemu.NIC{applianceNIC},
		Extra: []string{
			"-fw_cfg", "name=opt/kiln/config,file=" + configPath,
			"-fw_cfg", "name=opt/kiln/hosts.yaml,file=" + hostsPath,
		},
	})
	appliance.FailOn(boottest.PanicRE)
	start := time.Now()
	if _, err := appliance.Expect(ctx, boottest.ReadyRE, boottest.BootTimeout()); err != nil {
		t.Fatalf("appliance did not become ready: %v", err)
	}
	t.Logf("appliance ready in %s", time.Since(start).Round(time.Second))
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`files from QEMU fw_cfg.*config`),
		regexp.MustCompile(`imported provisioning.hosts_file.*created=2`),
	} {
		if !consoleHas(appliance, re) {
			t.Errorf("appliance console lacks a line matching %q", re)
		}
	}

	targets := []struct {
		name, host string
		cfg        qemu.Config
		nic        func(qemu.NIC) qemu.NIC
		chain      []*regexp.Regexp // steps of the chain seen before the script
	}{
		{"ovmf", "pxe-ovmf", qemu.Config{Firmware: qemu.UEFI, MemoryMiB: 512, NoWatchdog: true,
			// No option ROM: OVMF's own virtio-net driver and UEFI PXE, so
			// the chain goes through TFTP (ipxe.efi) before iPXE.
			Extra: []string{"-global", "virtio-net-pci.romfile="}},
			func(n qemu.NIC) qemu.NIC { n.MAC = ovmfMAC; return n },
			[]*regexp.Regexp{regexp.MustCompile(`NBP filename is ipxe\.efi`), regexp.MustCompile(`NBP file downloaded successfully`),
				regexp.MustCompile(`^Filename: http://10\.77\.0\.1:8080/boot/52-54-00-6b-6c-31\.ipxe\?nonce=[A-Za-z0-9_-]+`)}},
		{"seabios", "pxe-bios", qemu.Config{Firmware: qemu.BIOS, MemoryMiB: 256, NoWatchdog: true,
			// SeaBIOS copies option ROM text to the serial port without graphics.
			Extra: []string{"-machine", "graphics=off"}},
			func(n qemu.NIC) qemu.NIC { n.MAC, n.Model, n.ROMFile = biosMAC, "e1000", biosROM; return n },
			[]*regexp.Regexp{regexp.MustCompile(`^Filename: http://10\.77\.0\.1:8080/boot/52-54-00-6b-6c-32\.ipxe\?nonce=[A-Za-z0-9_-]+`)}},
	}
	for _, tc := range targets {
		t.Run(tc.name, func(t *testing.T) {
			nic := tc.nic(targetNIC)
			nic.Boot = true
			cfg := tc.cfg
			cfg.NICs = []qemu.NIC{nic}
			vm := startVM(t, ctx, tc.name, cfg)
			start := time.Now()
			marker := regexp.MustCompile(`kiln: booting ` + tc.host + ` with its configured kernel`)
			if _, err := vm.Expect(ctx, marker, 3*time.Minute); err != nil {
				t.Fatalf("%s target did not get its boot script: %v\nappliance console tail:\n%s", tc.name, err, appliance.ConsoleTail())
			}
			t.Logf("%s target ran its boot script %s after power-on", tc.name, time.Since(start).Round(time.Second))
			// The kernel does not exist: the script's failure path ends the boot.
			fallthroughRE := regexp.MustCompile(`kiln: network boot of ` + tc.host + ` failed, falling through`)
			if _, err := vm.Expect(ctx, fallthroughRE, time.Minute); err != nil {
				t.Errorf("%s target: the script's failure path did not run: %v", tc.name, err)
			}
			for _, re := range tc.chain {
				if !consoleHas(vm, re) {
					t.Errorf("%s target console lacks a line matching %q", tc.name, re)
				}
			}
			// DHCP gave iPXE a single-use nonce, never the host's token.
			if re := regexp.MustCompile(`token=`); consoleHas(vm, re) {
				t.Errorf("%s target console has a line matching %q: a DHCP reply carried a token", tc.name, re)
			}
			if testing.Verbose() {
				t.Logf("%s target console:\n%s", tc.name, vm.ConsoleTail())
			}
			vm.Close()
		})
	}
}

// consoleHas reports whether a console line so far matches re.
func consoleHas(vm *qemu.VM, re *regexp.Regexp) bool {
	for _, l := range vm.Lines() {
		if re.MatchString(l.Text) {
			return true
		}
	}
	return false
}
