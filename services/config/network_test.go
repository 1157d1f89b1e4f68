package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const goodNetwork = `
network:
  interfaces:
    - {name: mgmt0, mac: "52:54:00:00:00:01", role: management, dhcp: true}
    - {name: up0, role: upstream, dhcp: true, mtu: 1500}
    - {name: eth2, mtu: 9000}
    - {name: prov0, kind: vlan, parent: eth2, vlan: 20, role: provisioning, addresses: [10.0.0.1/24, "fd00:20::1/64"]}
    - {name: eth3}
    - {name: br0, kind: bridge, members: [eth3], role: provisioning, addresses: [10.1.0.1/24]}
  routes:
    - {to: 192.168.0.0/16, via: 10.0.0.254}
    - {to: default, via: "fd00:20::fe", interface: prov0, metric: 300}
    - {to: 172.16.0.0/12, interface: br0}
  resolver:
    nameservers: [192.0.2.53, "2001:db8::53"]
    search: [hall.example]
firewall:
  masquerade:
    hosts: [10.0.0.50, 10.1.0.7]
provisioning:
  subnets:
    - {name: a, interface: prov0, cidr: 10.0.0.0/24, mode: authoritative, pool: {start: 10.0.0.100, end: 10.0.0.199}}
    - {name: b, interface: br0, cidr: 10.1.0.0/24, mode: proxy}
`

func TestNetworkParse(t *testing.T) {
	c, err := Parse(strings.NewReader(goodNetwork))
	if err != nil {
		t.Fatalf("Parse(good) = %v", err)
	}
	n := c.Network
	if !n.Configured() {
		t.Fatalf("Configured() = false, want true")
	}
	prov, _ := n.Find("prov0")
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"Prefixes", prov.Prefixes(), []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24"), netip.MustParsePrefix("fd00:20::1/64")}},
		{"KindOrDefault", n.Interfaces[0].KindOrDefault(), KindEthernet},
		{"HardwareAddr", n.Interfaces[0].HardwareAddr().String(), "52:54:00:00:00:01"},
		{"WithRole", len(n.WithRole(RoleProvisioning)), 2},
		{"Dst", n.Routes[0].Dst(), netip.MustParsePrefix("192.168.0.0/16")},
		{"Dst default v6", n.Routes[1].Dst(), netip.MustParsePrefix("::/0")},
		{"Gateway", n.Routes[0].Gateway(), netip.MustParseAddr("10.0.0.254")},
		{"MasqueradeHosts", c.Firewall.MasqueradeHosts(), []netip.Addr{netip.MustParseAddr("10.0.0.50"), netip.MustParseAddr("10.1.0.7")}},
	} {
		if diff := cmp.Diff(tt.want, tt.got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestNetworkValidate(t *testing.T) {
	mgmt := "    - {name: mgmt0, role: management, addresses: [192.168.1.10/24]}\n"
	ifs := func(lines ...string) string {
		return "network:\n  interfaces:\n" + mgmt + strings.Join(lines, "")
	}
	prov := func(addr string) string {
		return ifs("    - {name: prov0, role: provisioning, addresses: ["+addr+"]}\n") +
			"provisioning:\n  subnets:\n    - {name: a, interface: prov0, cidr: 10.0.0.0/24, mode: authoritative, pool: {start: 10.0.0.100, end: 10.0.0.199}}\n"
	}
	tests := []struct {
		name string
		in   string
		want []string // each must appear; none means valid
	}{
		{"default has no network", "", nil},
		{"good", goodNetwork, nil},
		{"address outside its subnet", prov("10.9.0.1/24"),
			[]string{"network.interfaces[1].addresses: 10.9.0.1/24 is outside provisioning.subnets[0].cidr 10.0.0.0/24 (give prov0 an address inside 10.0.0.0/24)"}},
		{"no address in subnet", prov("fd00::1/64"), []string{"network.interfaces[1].addresses: no address inside provisioning.subnets[0].cidr 10.0.0.0/24"}},
		{"wrong prefix length", prov("10.0.0.1/16"), []string{"network.interfaces[1].addresses[0]: 10.0.0.1/16 has prefix /16 but provisioning.subnets[0].cidr is 10.0.0.0/24 (use 10.0.0.1/24)"}},
		{"subnet on unknown interface", ifs() + "provisioning:\n  subnets:\n    - {name: a, interface: eth9, cidr: 10.0.0.0/24, mode: proxy}\n",
			[]string{"provisioning.subnets[0].interface: \"eth9\" is not in network.interfaces"}},
		{"subnet on management interface", "network:\n  interfaces:\n    - {name: mgmt0, role: management, addresses: [10.0.0.1/24]}\n" +
			"provisioning:\n  subnets:\n    - {name: a, interface: mgmt0, cidr: 10.0.0.0/24, mode: proxy}\n",
			[]string{"network.interfaces[0].role: interface \"mgmt0\" serves provisioning.subnets[0] but has role \"management\""}},
		{"two upstreams", ifs("    - {name: a, role: upstream, dhcp: true}\n", "    - {name: b, role: upstream, dhcp: true}\n"),
			[]string{"network.interfaces[2].role: network.interfaces[1] is already the upstream (give exactly one interface role: upstream)"}},
		{"no management", "network:\n  interfaces:\n    - {name: up0, role: upstream, dhcp: true}\n",
			[]string{"network.interfaces: no interface has role management"}},
		{"unknown role", ifs("    - {name: a, role: admin}\n"), []string{"network.interfaces[1].role: unknown role \"admin\""}},
		{"bad mac", ifs("    - {name: a, mac: 52:54:00}\n"), []string{"network.interfaces[1].mac: \"52:54:00\" is not an Ethernet MAC address"}},
		{"duplicate mac", ifs("    - {name: a, mac: \"52:54:00:00:00:01\"}\n", "    - {name: b, mac: \"52:54:00:00:00:01\"}\n"),
			[]string{"network.interfaces[2].mac: 52:54:00:00:00:01 is also the MAC of network.interfaces[1]"}},
		{"duplicate name", ifs("    - {name: mgmt0}\n"), []string{"network.interfaces[1].name: \"mgmt0\" is also the name of network.interfaces[0]"}},
		{"long name", ifs("    - {name: averyveryverylongname}\n"), []string{"network.interfaces[1].name: \"averyveryverylongname\" is not a valid interface name"}},
		{"missing name", ifs("    - {mac: \"52:54:00:00:00:01\"}\n"), []string{"network.interfaces[1].name: missing"}},
		{"dhcp on provisioning", ifs("    - {name: a, role: provisioning, dhcp: true}\n"), []string{"network.interfaces[1].dhcp: a DHCP client runs only on upstream or management interfaces"}},
		{"vlan without parent", ifs("    - {name: v, kind: vlan, vlan: 5}\n"), []string{"network.interfaces[1].parent: missing"}},
		{"vlan unknown parent", ifs("    - {name: v, kind: vlan, parent: eth7, vlan: 5}\n"), []string{"network.interfaces[1].parent: \"eth7\" is not in network.interfaces"}},
		{"vlan id", ifs("    - {name: v, kind: vlan, parent: mgmt0, vlan: 5000}\n"), []string{"network.interfaces[1].vlan: VLAN id 5000 is out of range"}},
		{"vlan mtu", "network:\n  interfaces:\n    - {name: mgmt0, role: management, mtu: 1500}\n    - {name: v, kind: vlan, parent: mgmt0, vlan: 5, mtu: 9000}\n",
			[]string{"network.interfaces[1].mtu: 9000 is larger than the parent's mtu 1500"}},
		{"kind", ifs("    - {name: a, kind: bond}\n"), []string{"network.interfaces[1].kind: unknown kind \"bond\""}},
		{"bridge member unknown", ifs("    - {name: br0, kind: bridge, members: [eth5]}\n"), []string{"network.interfaces[1].members[0]: \"eth5\" is not in network.interfaces"}},
		{"bridge member with address", ifs("    - {name: eth5, addresses: [10.5.0.1/24]}\n", "    - {name: br0, kind: bridge, members: [eth5]}\n"),
			[]string{"network.interfaces[2].members[0]: \"eth5\" has a role, addresses or DHCP"}},
		{"member of two bridges", ifs("    - {name: eth5}\n", "    - {name: br0, kind: bridge, members: [eth5]}\n", "    - {name: br1, kind: bridge, members: [eth5]}\n"),
			[]string{"network.interfaces[3].members[0]: \"eth5\" is also a member of network.interfaces[2]"}},
		{"members on ethernet", ifs("    - {name: a, members: [mgmt0]}\n"), []string{"network.interfaces[1].members: only a bridge has members"}},
		{"address syntax", ifs("    - {name: a, addresses: [10.0.0.1]}\n"), []string{"network.interfaces[1].addresses[0]: \"10.0.0.1\" is not an address with prefix length"}},
		{"network address", ifs("    - {name: a, addresses: [10.0.0.0/24]}\n"), []string{"network.interfaces[1].addresses[0]: 10.0.0.0 is the network or broadcast address of 10.0.0.0/24"}},
		{"duplicate address", ifs("    - {name: a, addresses: [192.168.1.10/24]}\n"), []string{"network.interfaces[1].addresses[0]: 192.168.1.10 is also network.interfaces[0].addresses[0]"}},
		{"overlapping subnets", ifs("    - {name: a, addresses: [192.168.1.20/24]}\n"), []string{"network.interfaces[1].addresses[0]: 192.168.1.0/24 overlaps network.interfaces[0].addresses[0] 192.168.1.0/24"}},
		{"mtu", ifs("    - {name: a, mtu: 100}\n"), []string{"network.interfaces[1].mtu: 100 is out of range"}},
		{"route to", ifs() + "  routes:\n    - {to: 10.0.0.1/8, via: 192.168.1.1}\n", []string{"network.routes[0].to: 10.0.0.1/8 has host bits set (use 10.0.0.0/8)"}},
		{"route via off-link", ifs() + "  routes:\n    - {to: 10.0.0.0/8, via: 172.16.0.1}\n", []string{"network.routes[0].via: 172.16.0.1 is not on a subnet of any interface"}},
		{"route via family", ifs() + "  routes:\n    - {to: 10.0.0.0/8, via: \"fd00::1\"}\n", []string{"network.routes[0].via: fd00::1 and destination 10.0.0.0/8 are different IP versions"}},
		{"route interface", ifs() + "  routes:\n    - {to: default, via: 192.168.1.1, interface: eth9}\n", []string{"network.routes[0].interface: \"eth9\" is not in network.interfaces"}},
		{"route nothing", ifs() + "  routes:\n    - {to: default}\n", []string{"network.routes[0].via: missing"}},
		{"routes without interfaces", "network:\n  routes:\n    - {to: default, via: 10.0.0.1}\n", []string{"network.routes: routes need network.interfaces"}},
		{"resolver", "network:\n  resolver:\n    nameservers: [dns.example]\n    search: [-x-]\n",
			[]string{"network.resolver.nameservers[0]: \"dns.example\" is not an IP address", "network.resolver.search[0]: \"-x-\" is not a valid DNS domain"}},
		{"masquerade without upstream", prov("10.0.0.1/24") + "firewall:\n  masquerade:\n    hosts: [10.0.0.50]\n",
			[]string{"firewall.masquerade.hosts: masquerade needs an upstream interface"}},
		{"masquerade host off the LANs", ifs("    - {name: up0, role: upstream, dhcp: true}\n") + "firewall:\n  masquerade:\n    hosts: [10.7.0.50, nope]\n",
			[]string{"firewall.masquerade.hosts[0]: 10.7.0.50 is not on any provisioning interface's subnet", "firewall.masquerade.hosts[1]: \"nope\" is not an IPv4 address"}},
		{"port conflict", prov("10.0.0.1/24") + "management:\n  https_port: 8080\n",
			[]string{"management.https_port: port 8080 is also the HTTP boot port of the provisioning services (choose another management port)"}},
		{"port conflict dns", "management:\n  http_port: 53\nprovisioning:\n  subnets:\n    - {name: a, cidr: 10.0.0.0/24, mode: off}\n",
			[]string{"management.http_port: port 53 is also the DNS port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.in))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Parse(%q) = %v, want nil", tt.in, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) = %v, want ErrInvalid", tt.in, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q) = %v\nwant it to contain %q", tt.in, err, w)
				}
			}
		})
	}
}
