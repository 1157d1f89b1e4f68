package netconf

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/services/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func pfx(s string) Addr { return Addr{Prefix: netip.MustParsePrefix(s)} }

func dyn(s string) Addr { return Addr{Prefix: netip.MustParsePrefix(s), Dynamic: true} }

// A freshly booted VM: lo down, two NICs, DHCP on the first (bootnet).
var freshVM = Observed{Links: []Link{
	{Index: 1, Name: "lo", Kind: "device", MTU: 65536},
	{Index: 2, Name: "eth0", Kind: "device", MAC: "52:54:00:12:34:56", MTU: 1500, Up: true,
		Addrs: []Addr{dyn("10.0.2.15/24"), pfx("fe80::5054:ff:fe12:3456/64")}},
	{Index: 3, Name: "eth1", Kind: "device", MAC: "52:54:00:00:00:02", MTU: 1500},
	{Index: 4, Name: "eth2", Kind: "device", MAC: "52:54:00:00:00:03", MTU: 1500},
}}

const vmConfig = `
network:
  interfaces:
    - {name: mgmt0, mac: "52:54:00:12:34:56", role: management, dhcp: true}
    - {name: prov0, mac: "52:54:00:00:00:02", role: provisioning, mtu: 9000, addresses: [10.0.0.1/24, "fd00:10::1/64"]}
  routes:
    - {to: 192.168.0.0/16, via: 10.0.0.254}
    - {to: "fd00:99::/64", via: "fd00:10::fe"}
  resolver: {nameservers: [10.0.0.53]}
`

const virtualConfig = `
network:
  interfaces:
    - {name: eth0, role: management, addresses: [192.168.1.10/24]}
    - {name: trunk, mac: "52:54:00:00:00:02", mtu: 9000}
    - {name: vl20, kind: vlan, parent: trunk, vlan: 20, role: provisioning, addresses: [10.20.0.1/24]}
    - {name: vl30, kind: vlan, parent: trunk, vlan: 30}
    - {name: eth2}
    - {name: br0, kind: bridge, members: [vl30, eth2], role: provisioning, mtu: 1500, addresses: [10.30.0.1/24]}
    - {name: vl40, kind: vlan, parent: br0, vlan: 40, addresses: [10.40.0.1/24]}
  routes:
    - {to: default, via: 192.168.1.1, metric: 50}
    - {to: 172.16.0.0/12, interface: br0}
`

// A host that drifted from virtualConfig: a stale kiln vlan, a foreign
// address, a wrong MTU, a vlan with the wrong id, an old route.
var drifted = Observed{
	Links: []Link{
		{Index: 1, Name: "lo", Kind: "device", MTU: 65536, Up: true, Addrs: []Addr{pfx("127.0.0.1/8"), pfx("::1/128")}},
		{Index: 2, Name: "eth0", Kind: "device", MAC: "52:54:00:12:34:56", MTU: 1500, Up: true,
			Addrs: []Addr{pfx("192.168.1.10/24"), pfx("192.168.1.99/24")}},
		{Index: 3, Name: "trunk", Kind: "device", MAC: "52:54:00:00:00:02", MTU: 1500, Up: true},
		{Index: 4, Name: "eth2", Kind: "device", MAC: "52:54:00:00:00:03", MTU: 1500, Up: true, Master: 7},
		{Index: 5, Name: "vl20", Kind: "vlan", Parent: 3, VLAN: 21, MTU: 1500, Up: true, Alias: Alias, Addrs: []Addr{pfx("10.20.0.1/24")}},
		{Index: 6, Name: "vl99", Kind: "vlan", Parent: 3, VLAN: 99, MTU: 1500, Up: true, Alias: Alias},
		{Index: 7, Name: "br0", Kind: "bridge", MTU: 1500, Up: true, Alias: Alias, Addrs: []Addr{pfx("10.30.0.1/24")}},
		{Index: 8, Name: "docker0", Kind: "bridge", MTU: 1500, Up: true, Addrs: []Addr{pfx("172.17.0.1/16")}},
	},
	Routes: []Route{
		{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("192.168.1.1"), Link: 2, Metric: 50},
		{Dst: netip.MustParsePrefix("10.99.0.0/16"), Gw: netip.MustParseAddr("192.168.1.1"), Link: 2},
	},
}

// Two NICs whose names must be swapped (matched by MAC).
var swapped = Observed{Links: []Link{
	{Index: 1, Name: "lo", Kind: "device", MTU: 65536, Up: true},
	{Index: 2, Name: "eth0", Kind: "device", MAC: "52:54:00:00:00:02", MTU: 1500, Up: true},
	{Index: 3, Name: "eth1", Kind: "device", MAC: "52:54:00:12:34:56", MTU: 1500, Up: true},
}}

const swapConfig = `
network:
  interfaces:
    - {name: eth0, mac: "52:54:00:12:34:56", role: management, addresses: [192.168.1.10/24]}
    - {name: eth1, mac: "52:54:00:00:00:02", role: provisioning, addresses: [10.0.0.1/24]}
`

func network(t *testing.T, yaml string) config.Network {
	t.Helper()
	c, err := config.Parse(strings.NewReader(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c.Network
}

func TestMakePlanGolden(t *testing.T) {
	tests := []struct {
		name string
		cfg  string
		obs  Observed
	}{
		{"fresh-vm", vmConfig, freshVM},
		{"virtual-from-scratch", virtualConfig, freshVM},
		{"drifted", virtualConfig, drifted},
		{"swap-names", swapConfig, swapped},
		{"unmanage", "network:\n  resolver: {nameservers: [192.0.2.53]}\n", drifted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := network(t, tt.cfg)
			p, err := MakePlan(n, tt.obs)
			if err != nil {
				t.Fatalf("MakePlan = %v", err)
			}
			got := p.String()
			golden := filepath.Join("testdata", tt.name+".plan")
			if *update {
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("MakePlan(%s) differs from %s (-want +got):\n%s", tt.name, golden, diff)
			}
			// Applying the plan converges: planning again gives nothing to do.
			after := simulate(t, tt.obs, p)
			if p2, err := MakePlan(n, after); err != nil || len(p2) != 0 {
				t.Errorf("MakePlan after applying = %q, %v; want an empty plan", p2.String(), err)
			}
		})
	}
}

func TestMakePlanErrors(t *testing.T) {
	foreign := Observed{Links: append(slices.Clone(freshVM.Links),
		Link{Index: 9, Name: "vl30", Kind: "vlan", Parent: 2, VLAN: 31, MTU: 1500},
		Link{Index: 10, Name: "vl20", Kind: "dummy", MAC: "52:54:00:00:00:09"})}
	twins := Observed{Links: append(slices.Clone(freshVM.Links),
		Link{Index: 9, Name: "eth9", Kind: "device", MAC: "52:54:00:00:00:02"})}
	tests := []struct {
		name string
		cfg  string
		obs  Observed
		want string
	}{
		{"unknown MAC", "network:\n  interfaces:\n    - {name: mgmt0, mac: \"52:54:00:99:99:99\", role: management, dhcp: true}\n", freshVM,
			"network.interfaces[0].mac: no link has MAC 52:54:00:99:99:99 (check the MAC against the NICs present (eth0 52:54:00:12:34:56, eth1 52:54:00:00:00:02, eth2 52:54:00:00:00:03))"},
		{"unknown name", "network:\n  interfaces:\n    - {name: eth7, role: management, dhcp: true}\n", freshVM,
			"network.interfaces[0].name: no link is called \"eth7\""},
		{"two NICs with one MAC", "network:\n  interfaces:\n    - {name: p, mac: \"52:54:00:00:00:02\", role: management, dhcp: true}\n", twins,
			"network.interfaces[0].mac: 2 links have MAC 52:54:00:00:00:02"},
		{"foreign vlan with another id", "network:\n  interfaces:\n    - {name: eth0, role: management, dhcp: true}\n    - {name: vl30, kind: vlan, parent: eth0, vlan: 30}\n", foreign,
			"network.interfaces[1].name: a vlan link called \"vl30\" exists and kiln did not create it"},
		{"foreign link named like a vlan", "network:\n  interfaces:\n    - {name: eth0, role: management, dhcp: true}\n    - {name: vl20, kind: vlan, parent: eth0, vlan: 20}\n", foreign,
			"network.interfaces[1].name: a dummy link called \"vl20\" exists and kiln did not create it"},
		{"rename onto a foreign link", "network:\n  interfaces:\n    - {name: eth2, mac: \"52:54:00:12:34:56\", role: management, dhcp: true}\n", freshVM,
			"network.interfaces[0].name: link eth0 (MAC 52:54:00:12:34:56) cannot be renamed \"eth2\": another link has that name"},
		{"vlan named like a NIC", "network:\n  interfaces:\n    - {name: mgmt0, mac: \"52:54:00:12:34:56\", role: management, dhcp: true}\n    - {name: eth0, kind: vlan, parent: mgmt0, vlan: 5}\n", freshVM,
			"network.interfaces[1].name: \"eth0\" is the name the NIC of network.interfaces[0] has now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := MakePlan(network(t, tt.cfg), tt.obs)
			var fe *config.FieldError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("MakePlan = %q, %v\nwant a FieldError containing %q", p.String(), err, tt.want)
			}
		})
	}
}

// simulate applies p to a copy of obs the way the kernel would.
func simulate(t *testing.T, obs Observed, p Plan) Observed {
	t.Helper()
	o := Observed{Routes: slices.Clone(obs.Routes)}
	for _, l := range obs.Links {
		l.Addrs = slices.Clone(l.Addrs)
		o.Links = append(o.Links, l)
	}
	find := func(name string) *Link {
		for i := range o.Links {
			if o.Links[i].Name == name {
				return &o.Links[i]
			}
		}
		return nil
	}
	must := func(name string) *Link {
		l := find(name)
		if l == nil {
			t.Fatalf("simulate: step names missing link %q", name)
		}
		return l
	}
	next := 100
	for _, s := range p {
		switch s.Op {
		case OpDelete:
			idx := must(s.Link).Index
			o.Links = slices.DeleteFunc(o.Links, func(l Link) bool { return l.Index == idx || l.Parent == idx })
			for i := range o.Links {
				if o.Links[i].Master == idx {
					o.Links[i].Master = 0
				}
			}
			o.Routes = slices.DeleteFunc(o.Routes, func(r Route) bool { return r.Link == idx })
		case OpRename:
			if find(s.To) != nil {
				t.Fatalf("simulate: rename %s onto existing %s", s.Link, s.To)
			}
			l := must(s.Link)
			l.Name, l.Up = s.To, false
		case OpCreateBridge:
			next++
			o.Links = append(o.Links, Link{Index: next, Name: s.Link, Kind: "bridge", MTU: 1500, Alias: Alias})
		case OpCreateVLAN:
			parent := must(s.To)
			next++
			o.Links = append(o.Links, Link{Index: next, Name: s.Link, Kind: "vlan", Parent: parent.Index, VLAN: s.VLAN, MTU: parent.MTU, MAC: parent.MAC, Alias: Alias})
		case OpNoMaster:
			must(s.Link).Master = 0
		case OpSetMaster:
			must(s.Link).Master = must(s.To).Index
		case OpSetMTU:
			must(s.Link).MTU = s.MTU
		case OpDelAddr:
			l := must(s.Link)
			l.Addrs = slices.DeleteFunc(l.Addrs, func(a Addr) bool { return a.Prefix == s.Prefix })
		case OpAddAddr:
			l := must(s.Link)
			l.Addrs = append(l.Addrs, Addr{Prefix: s.Prefix})
		case OpUp:
			must(s.Link).Up = true
		case OpDelRoute:
			o.Routes = slices.DeleteFunc(o.Routes, func(r Route) bool { return r.Dst == s.Prefix && r.Gw == s.Gw && r.Metric == s.Metric })
		case OpAddRoute:
			r := Route{Dst: s.Prefix, Gw: s.Gw, Metric: s.Metric}
			if s.Link != "" {
				r.Link = must(s.Link).Index
			}
			o.Routes = append(o.Routes, r)
		default:
			t.Fatalf("simulate: unknown step %v", s)
		}
	}
	return o
}

func TestResolvConf(t *testing.T) {
	leases := []*Lease{
		{Interface: "up0", DNS: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.53")}, Search: []string{"isp.example"}},
		{Interface: "mgmt0", DNS: []netip.Addr{netip.MustParseAddr("10.0.2.3")}, Search: []string{"hall.example"}},
	}
	got := ResolvConf(config.Resolver{Nameservers: []string{"192.0.2.53"}, Search: []string{"hall.example"}}, leases)
	want := "# written by kiln netconf from network.resolver and DHCP leases\n" +
		"search hall.example isp.example\n" +
		"nameserver 192.0.2.53\nnameserver 10.0.2.3\nnameserver 192.0.2.1\n"
	if got != want {
		t.Errorf("ResolvConf = %q, want %q", got, want)
	}
}

func TestLinkStatuses(t *testing.T) {
	n := network(t, virtualConfig)
	obs := drifted
	obs.Links[1].Carrier, obs.Links[1].State = true, "up"
	got := LinkStatuses(obs, n, func(name string) int {
		if name == "eth0" {
			return 1000
		}
		return -1
	})
	want := LinkStatus{Name: "eth0", Kind: "device", Role: "management", MAC: "52:54:00:12:34:56", State: "up", AdminUp: true, Carrier: true,
		SpeedMbps: 1000, MTU: 1500, Addresses: []string{"192.168.1.10/24", "192.168.1.99/24"}}
	i := slices.IndexFunc(got, func(s LinkStatus) bool { return s.Name == "eth0" })
	if i < 0 {
		t.Fatalf("LinkStatuses has no eth0: %+v", got)
	}
	if diff := cmp.Diff(want, got[i]); diff != "" {
		t.Errorf("LinkStatuses eth0 (-want +got):\n%s", diff)
	}
	j := slices.IndexFunc(got, func(s LinkStatus) bool { return s.Name == "eth2" })
	if got[j].Master != "br0" {
		t.Errorf("LinkStatuses eth2 master = %q, want br0", got[j].Master)
	}
}
