package vmrun

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/image"
	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/spec"
)

var updateTargets = flag.Bool("update", false, "rewrite testdata/vmtargets/*.golden")

// golden compares got with testdata/vmtargets/name, rewriting it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "vmtargets", name)
	if *updateTargets {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

// userConfig configures interfaces and a subnet of its own.
const userConfig = `# my lab
hostname: lab
network:
  interfaces:
    - {name: mgmt0, mac: "52:54:00:6b:6c:01", role: management, addresses: [10.0.2.15/24]}
provisioning:
  domain: lab.test
  subnets:
    # reached through a relay
    - name: office
      cidr: 10.5.0.0/24
      mode: "off"
`

func TestTargetsConfig(t *testing.T) {
	tests := []struct {
		name, base, golden string
	}{
		{"image default", string(image.DefaultConfig()), "default-config.yaml.golden"},
		{"user config with interfaces and a subnet", userConfig, "user-config.yaml.golden"},
		{"empty file", "", "empty-config.yaml.golden"},
		{"null sections", "hostname: x\nnetwork:\nprovisioning:\n", "null-sections.yaml.golden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := targetsConfig([]byte(tt.base))
			if err != nil {
				t.Fatalf("targetsConfig() error = %v", err)
			}
			golden(t, tt.golden, got)
			c, err := config.Parse(bytes.NewReader(got))
			if err != nil {
				t.Fatalf("config.Parse(targetsConfig()) error = %v", err)
			}
			var prov *config.Interface
			for i := range c.Network.Interfaces {
				if c.Network.Interfaces[i].Name == targetsIface {
					prov = &c.Network.Interfaces[i]
				}
			}
			if prov == nil || prov.MAC != targetsApplianceMAC || prov.Role != config.RoleProvisioning {
				t.Errorf("prov0 = %+v, want the provisioning NIC %s", prov, targetsApplianceMAC)
			}
			var mgmt int
			for _, i := range c.Network.Interfaces {
				if i.Role == config.RoleManagement {
					mgmt++
				}
			}
			if mgmt != 1 {
				t.Errorf("%d management interfaces, want 1", mgmt)
			}
			sn := c.Provisioning.Subnets[len(c.Provisioning.Subnets)-1]
			if sn.Name != targetsSubnetName || sn.Interface != targetsIface || sn.Mode != config.ModeAuthoritative || sn.CIDR != targetsPrefix.String() {
				t.Errorf("last subnet = %+v, want %s on %s", sn, targetsSubnetName, targetsIface)
			}
			if c.Provisioning.HostsFile != "/run/kiln/fw_cfg/hosts.yaml" {
				t.Errorf("provisioning.hosts_file = %q, want the fw_cfg copy", c.Provisioning.HostsFile)
			}
		})
	}
}

func TestTargetsConfigErrors(t *testing.T) {
	tests := []struct {
		name, base, want string
	}{
		{"not YAML", "hostname: [", "reading the config"},
		{"not a mapping", "- a\n- b\n", "not a YAML mapping"},
		{"network not a mapping", "network: 5\n", "network (line 1) is not a mapping"},
		{"interfaces not a list", "network: {interfaces: {a: b}}\n", "network.interfaces (line 1) is not a list"},
		{"prov0 taken", "network:\n  interfaces:\n    - {name: prov0, mac: \"52:54:00:00:00:01\", role: provisioning, addresses: [10.1.0.1/24]}\n",
			"network.interfaces[0] (prov0"},
		{"hosts file taken", "provisioning: {hosts_file: /data/hosts.yaml}\n", "provisioning.hosts_file is \"/data/hosts.yaml\""},
		{"invalid merge", "hostname: x\nbogus: 1\n", "the config with the targets' segment added is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := targetsConfig([]byte(tt.base))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("targetsConfig(%q) error = %v, want one containing %q", tt.base, err, tt.want)
			}
		})
	}
}

func TestTargetsHosts(t *testing.T) {
	want := qemu.Target{}.ExpectedSpec()
	got, err := targetsHosts(2, want)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "hosts.yaml.golden", got)
	hosts, err := store.ParseHosts(bytes.NewReader(got), store.FormatYAML)
	if err != nil {
		t.Fatalf("store.ParseHosts(targetsHosts()) error = %v", err)
	}
	if len(hosts) != 2 {
		t.Fatalf("%d hosts, want 2", len(hosts))
	}
	for i, h := range hosts {
		n := i + 1
		if h.Name != targetName(n) || len(h.MACs) != 1 || h.MACs[0] != targetMAC(n) || h.BootProfile != "vet" || h.IPv4 != targetAddr(n) {
			t.Errorf("host %d = %s %v %s %s, want %s [%s] vet %s", n, h.Name, h.MACs, h.BootProfile, h.IPv4, targetName(n), targetMAC(n), targetAddr(n))
		}
		if h.ExpectedSpec != want {
			t.Errorf("host %d expected_spec = %q, want %q", n, h.ExpectedSpec, want)
		}
		if _, err := spec.Parse([]byte(h.ExpectedSpec)); err != nil {
			t.Errorf("host %d expected_spec: %v", n, err)
		}
	}
}

func TestTargetSegment(t *testing.T) {
	for _, n := range []int{1, 3} {
		a, ts, err := targetSegment(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != n || a.MAC != targetsApplianceMAC {
			t.Fatalf("targetSegment(%d) = %+v, %d targets", n, a, len(ts))
		}
		macs := map[string]bool{a.MAC: true}
		for i, nic := range ts {
			if nic.MAC != targetMAC(i+1) || macs[nic.MAC] {
				t.Errorf("targetSegment(%d) target %d MAC %s, want a distinct %s", n, i+1, nic.MAC, targetMAC(i+1))
			}
			macs[nic.MAC] = true
			switch {
			case n == 1 && (nic.Kind != qemu.Dgram || nic.LocalPort != a.RemotePort || nic.RemotePort != a.LocalPort):
				t.Errorf("targetSegment(1): appliance %+v and target %+v are not a dgram pair", a, nic)
			case n > 1 && (nic.Kind != qemu.Mcast || nic.Group != a.Group):
				t.Errorf("targetSegment(%d): target %+v not on the appliance's group %s", n, nic, a.Group)
			}
		}
	}
}

func TestPrepareTargets(t *testing.T) {
	dir := t.TempDir()
	user := filepath.Join(dir, "mine.yaml")
	os.WriteFile(user, []byte(userConfig), 0o644)
	o := Options{State: filepath.Join(dir, "vm"), Targets: 2, Config: user}
	files, nic, targets, err := prepareTargets(o)
	if err != nil {
		t.Fatalf("prepareTargets() error = %v", err)
	}
	if nic.MAC != targetsApplianceMAC || len(targets) != 2 || targets[1].Dir != filepath.Join(dir, "vm", "targets", "target-2") {
		t.Errorf("prepareTargets() = NIC %+v, targets %+v", nic, targets)
	}
	want := []qemu.FwCfg{
		{Name: "opt/kiln/config", File: filepath.Join(dir, "vm", "targets", "kiln.yaml")},
		{Name: "opt/kiln/hosts.yaml", File: filepath.Join(dir, "vm", "targets", "hosts.yaml")},
	}
	if diff := cmp.Diff(want, files); diff != "" {
		t.Fatalf("prepareTargets() files mismatch (-want +got):\n%s", diff)
	}
	conf, _ := os.ReadFile(files[0].File)
	if !strings.Contains(string(conf), "hostname: lab") || !strings.Contains(string(conf), targetsApplianceMAC) {
		t.Errorf("written config does not merge --config with the segment:\n%s", conf)
	}
	o.Config = filepath.Join(dir, "missing.yaml")
	if _, _, _, err := prepareTargets(o); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("prepareTargets(missing --config) error = %v, want one naming --config", err)
	}
}

func TestFallThroughReason(t *testing.T) {
	tests := []struct {
		name    string
		lines   []string
		matched string
		want    string
	}{
		{"script failed", []string{"kiln: starting the vetting image on target-1", "x"},
			"kiln: network boot of target-1 failed, falling through to the next boot device", "network boot of target-1 failed"},
		{"refused", []string{"iPXE 1.0", "kiln: no vetting run for target-1 (start one)", "kiln: falling through to the next boot device"},
			"kiln: falling through to the next boot device", "no vetting run for target-1 (start one)"},
		{"refused without a reason", []string{"kiln: falling through to the next boot device"},
			"kiln: falling through to the next boot device", "its boot script fell through"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fallThroughReason(tt.lines, tt.matched); got != tt.want {
				t.Errorf("fallThroughReason(%q, %q) = %q, want %q", tt.lines, tt.matched, got, tt.want)
			}
		})
	}
}
