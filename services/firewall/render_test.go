package firewall

import (
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/services/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// configs are the rulesets under golden test; the tier-3 tests use them too.
var configs = map[string]string{
	"management-only": `
network:
  interfaces:
    - {name: eth0, role: management, dhcp: true}
`,
	"three-roles": `
management: {https_port: 8443, http_port: 0}
network:
  interfaces:
    - {name: mgmt0, mac: "52:54:00:00:00:01", role: management, addresses: [192.168.1.10/24]}
    - {name: prov0, role: provisioning, addresses: [10.0.0.1/24]}
    - {name: up0, role: upstream, dhcp: true}
provisioning:
  subnets:
    - {name: a, interface: prov0, cidr: 10.0.0.0/24, mode: authoritative, pool: {start: 10.0.0.100, end: 10.0.0.199}}
`,
	"masquerade": `
network:
  interfaces:
    - {name: mgmt0, role: management, addresses: [192.168.1.10/24]}
    - {name: eth1}
    - {name: prov20, kind: vlan, parent: eth1, vlan: 20, role: provisioning, addresses: [10.20.0.1/24]}
    - {name: eth2}
    - {name: br0, kind: bridge, members: [eth2], role: provisioning, addresses: [10.30.0.1/24]}
    - {name: up0, role: upstream, addresses: [203.0.113.2/24]}
  routes:
    - {to: default, via: 203.0.113.1}
firewall:
  masquerade:
    hosts: [10.20.0.50, 10.30.0.7]
`,
}

func mustConfig(t *testing.T, name string) config.Config {
	t.Helper()
	c, err := config.Parse(strings.NewReader(configs[name]))
	if err != nil {
		t.Fatalf("config %s: %v", name, err)
	}
	return c
}

func TestRenderGolden(t *testing.T) {
	for name := range configs {
		t.Run(name, func(t *testing.T) {
			r, err := Render(mustConfig(t, name))
			if err != nil {
				t.Fatalf("Render(%s) = %v", name, err)
			}
			got := r.Text()
			golden := filepath.Join("testdata", name+".nft")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("Render(%s).Text() differs from %s (-want +got):\n%s", name, golden, diff)
			}
			r2, _ := Render(mustConfig(t, name))
			if r2.Hash() != r.Hash() {
				t.Errorf("Render(%s) is not deterministic: hash %s then %s", name, r.Hash(), r2.Hash())
			}
		})
	}
}

// TestRenderNftCheck has nft(8) parse and check every golden ruleset against
// the kernel (nft -c commits nothing; it runs in a throwaway namespace).
func TestRenderNftCheck(t *testing.T) {
	requireRoot(t)
	for name := range configs {
		t.Run(name, func(t *testing.T) {
			r, err := Render(mustConfig(t, name))
			if err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(t.TempDir(), "r.nft")
			os.WriteFile(f, []byte(r.Text()), 0o644)
			if out, err := exec.Command("unshare", "-n", "nft", "-c", "-f", f).CombinedOutput(); err != nil {
				t.Errorf("nft -c -f %s: %v\n%s\n%s", name, err, out, r.Text())
			}
		})
	}
}

func TestRenderDifferentConfigsDifferentHashes(t *testing.T) {
	seen := map[string]string{}
	for name := range configs {
		r, err := Render(mustConfig(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := seen[r.Hash()]; dup {
			t.Errorf("Render(%s).Hash() = Render(%s).Hash() = %s", name, other, r.Hash())
		}
		seen[r.Hash()] = name
	}
}

func TestRenderNotConfigured(t *testing.T) {
	if _, err := Render(config.Default()); !errors.Is(err, ErrNotConfigured) {
		t.Errorf("Render(default) = %v, want ErrNotConfigured", err)
	}
}

// requireRoot skips unless the tier-3 requirements (root, nft, ip, unshare) are met.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: uses network namespaces and nf_tables")
	}
	for _, c := range []string{"nft", "ip", "unshare"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("needs %s (apt-get install nftables iproute2 util-linux)", c)
		}
	}
}
