package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Network configures kiln's own interfaces, routes and resolver; the netconf
// service applies it. When Interfaces is empty kiln does not manage the
// network: PID 1 brings up every wired NIC with DHCP and there is no firewall.
type Network struct {
	// Interfaces are the links kiln configures; links not listed are left alone.
	Interfaces []Interface `yaml:"interfaces"`
	// Routes are static routes (besides the DHCP lease's default route).
	Routes []Route `yaml:"routes"`
	// Resolver is kiln's own DNS resolver configuration (resolv.conf).
	Resolver Resolver `yaml:"resolver"`
}

// Interface roles: they decide what the firewall accepts on the interface.
const (
	// RoleManagement accepts the management API/UI ports.
	RoleManagement = "management"
	// RoleProvisioning accepts the provisioning services (DHCP, DNS, TFTP,
	// HTTP boot, NFS, iSCSI, syslog).
	RoleProvisioning = "provisioning"
	// RoleUpstream accepts only replies to connections kiln opened.
	RoleUpstream = "upstream"
)

// Interface kinds.
const (
	KindEthernet = "ethernet" // an existing NIC, matched by MAC or name (the default)
	KindVLAN     = "vlan"     // an 802.1Q sub-interface kiln creates on Parent
	KindBridge   = "bridge"   // a bridge kiln creates over Members
)

// Interface is one link kiln configures.
type Interface struct {
	// Name is the link's kernel name. An ethernet interface with a MAC is
	// renamed to Name; without a MAC the link called Name is used.
	Name string `yaml:"name"`
	// MAC selects an ethernet NIC by hardware address, e.g. 52:54:00:12:34:56.
	MAC string `yaml:"mac"`
	// Kind is ethernet (default), vlan or bridge.
	Kind string `yaml:"kind"`
	// Parent is the interface a vlan sits on (the name of another entry).
	Parent string `yaml:"parent"`
	// VLAN is the 802.1Q id of a vlan (1-4094).
	VLAN int `yaml:"vlan"`
	// Members are the interfaces a bridge enslaves (names of other entries).
	Members []string `yaml:"members"`
	// Role is management, provisioning, upstream or empty (no inbound access).
	Role string `yaml:"role"`
	// Addresses are static addresses with prefix length, IPv4 or IPv6
	// ("10.0.0.1/24", "fd00::1/64").
	Addresses []string `yaml:"addresses"`
	// DHCP runs a DHCPv4 client on the interface (upstream or management only).
	DHCP bool `yaml:"dhcp"`
	// MTU of the link; 0 leaves it as it is.
	MTU int `yaml:"mtu"`
}

// Route is one static route.
type Route struct {
	// To is the destination network ("192.168.0.0/16") or "default".
	To string `yaml:"to"`
	// Via is the gateway; empty makes a route straight onto Interface.
	Via string `yaml:"via"`
	// Interface is the outgoing interface (an entry's name); empty lets the
	// kernel find it from Via.
	Interface string `yaml:"interface"`
	// Metric orders routes to the same destination (lower wins).
	Metric int `yaml:"metric"`
}

// Resolver is written to resolv.conf, before the servers DHCP leases name.
type Resolver struct {
	Nameservers []string `yaml:"nameservers"`
	Search      []string `yaml:"search"`
}

// Firewall configures what the firewall allows beyond the per-role rules.
type Firewall struct {
	// Masquerade lets chosen provisioning hosts reach the upstream network
	// through kiln (source NAT).
	Masquerade Masquerade `yaml:"masquerade"`
}

// Masquerade is source NAT from provisioning interfaces to the upstream one.
type Masquerade struct {
	// Hosts are the IPv4 source addresses allowed out; empty turns masquerade off.
	Hosts []string `yaml:"hosts"`
}

// Port is a port a kiln service listens on.
type Port struct {
	Proto   string // "tcp" or "udp"
	Port    int
	Service string // what listens, for messages
}

// ProvisioningPorts are the ports the firewall opens on provisioning
// interfaces, and only those; DNS, TFTP and HTTP boot as p configures them.
func ProvisioningPorts(p Provisioning) []Port {
	port := func(listen string) int {
		_, n, _ := splitListen(listen)
		return n
	}
	return []Port{
		{"udp", 67, "DHCP server"},
		{"udp", 68, "DHCP client (rogue server probe)"},
		{"udp", 4011, "proxyDHCP"},
		{"udp", port(p.DNSListen()), "DNS"},
		{"tcp", port(p.DNSListen()), "DNS"},
		{"udp", port(p.TFTPListen()), "TFTP"},
		{"tcp", p.HTTPBootPort(), "HTTP boot"},
		{"tcp", 2049, "NFS"}, // NFSv4 only: no rpcbind, mountd, lockd or statd ports
		{"tcp", 3260, "iSCSI"},
		{"udp", 514, "syslog"},
		{"tcp", 514, "syslog"},
		{"udp", 123, "NTP"}, // ntp.listen's port is fixed to what clients ask
	}
}

// Configured reports whether kiln manages the network (interfaces are listed).
func (n Network) Configured() bool { return len(n.Interfaces) > 0 }

// Find returns the interface called name.
func (n Network) Find(name string) (Interface, bool) {
	for _, i := range n.Interfaces {
		if i.Name == name {
			return i, true
		}
	}
	return Interface{}, false
}

// WithRole returns the interfaces with role r, in config order.
func (n Network) WithRole(r string) []Interface {
	var out []Interface
	for _, i := range n.Interfaces {
		if i.Role == r {
			out = append(out, i)
		}
	}
	return out
}

// KindOrDefault returns Kind with the default applied.
func (i Interface) KindOrDefault() string {
	if i.Kind == "" {
		return KindEthernet
	}
	return i.Kind
}

// HardwareAddr returns the parsed MAC (nil if none or invalid).
func (i Interface) HardwareAddr() net.HardwareAddr {
	m, err := net.ParseMAC(i.MAC)
	if err != nil {
		return nil
	}
	return m
}

// Prefixes returns the parsed static addresses (invalid ones skipped).
func (i Interface) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range i.Addresses {
		if p, err := netip.ParsePrefix(a); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Dst returns the parsed destination; "default" is 0.0.0.0/0, or ::/0 for an
// IPv6 gateway.
func (r Route) Dst() netip.Prefix {
	if r.To == "default" {
		if g := r.Gateway(); g.Is6() {
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	p, _ := netip.ParsePrefix(r.To)
	return p
}

// Gateway returns the parsed Via (zero if none).
func (r Route) Gateway() netip.Addr {
	a, _ := netip.ParseAddr(r.Via)
	return a
}

// MasqueradeHosts returns the parsed masquerade sources.
func (f Firewall) MasqueradeHosts() []netip.Addr { return parseAddrs(f.Masquerade.Hosts) }

// validateNetwork appends every problem of the network and firewall sections,
// and of ports two services would share, to errs.
func (c Config) validateNetwork(add func(field, problem, fix string)) {
	n := c.Network
	c.validatePorts(add)
	if !n.Configured() {
		if len(n.Routes) > 0 {
			add("network.routes", "routes need network.interfaces", "list the interfaces kiln manages under network.interfaces, or remove the routes")
		}
		if len(c.Firewall.Masquerade.Hosts) > 0 {
			add("firewall.masquerade.hosts", "masquerade needs network.interfaces with an upstream and a provisioning interface", "configure network.interfaces, or remove the hosts")
		}
		n.validateResolver(add)
		return
	}
	names := map[string]int{}
	macs := map[string]int{}
	for i, itf := range n.Interfaces {
		f := fmt.Sprintf("network.interfaces[%d]", i)
		switch {
		case itf.Name == "":
			add(f+".name", "missing", "name the interface, e.g. name: prov0 (the kernel name kiln gives or finds)")
		case !validIfname(itf.Name):
			add(f+".name", fmt.Sprintf("%q is not a valid interface name", itf.Name), "use 1-15 letters, digits, '-', '_' or '.'")
		default:
			if j, dup := names[itf.Name]; dup {
				add(f+".name", fmt.Sprintf("%q is also the name of network.interfaces[%d]", itf.Name, j), "give every interface its own name")
			} else {
				names[itf.Name] = i
			}
		}
	}
	upstream := -1
	management := false
	owner := map[string]int{} // bridge member -> bridge index
	type addrAt struct {
		p     netip.Prefix
		field string
	}
	var all []addrAt
	for i, itf := range n.Interfaces {
		f := fmt.Sprintf("network.interfaces[%d]", i)
		kind := itf.KindOrDefault()
		switch kind {
		case KindEthernet:
			if itf.MAC != "" {
				if m, err := net.ParseMAC(itf.MAC); err != nil || len(m) != 6 {
					add(f+".mac", fmt.Sprintf("%q is not an Ethernet MAC address", itf.MAC), "use six hex bytes like 52:54:00:12:34:56")
				} else if j, dup := macs[m.String()]; dup {
					add(f+".mac", fmt.Sprintf("%s is also the MAC of network.interfaces[%d]", m, j), "each NIC has one entry")
				} else {
					macs[m.String()] = i
				}
			}
		case KindVLAN, KindBridge:
			if itf.MAC != "" {
				add(f+".mac", "only ethernet interfaces are matched by MAC", "remove mac, or set kind: ethernet")
			}
		default:
			add(f+".kind", fmt.Sprintf("unknown kind %q", itf.Kind), "use ethernet, vlan or bridge")
		}
		if kind == KindVLAN {
			p, ok := n.Find(itf.Parent)
			switch {
			case itf.Parent == "":
				add(f+".parent", "missing", "name the interface the VLAN sits on, e.g. parent: eth1")
			case !ok:
				add(f+".parent", fmt.Sprintf("%q is not in network.interfaces", itf.Parent), "list the parent interface too")
			case p.KindOrDefault() == KindVLAN || itf.Parent == itf.Name:
				add(f+".parent", fmt.Sprintf("%q is not an ethernet or bridge interface", itf.Parent), "put VLANs on an ethernet interface or a bridge")
			}
			if itf.VLAN < 1 || itf.VLAN > 4094 {
				add(f+".vlan", fmt.Sprintf("VLAN id %d is out of range", itf.VLAN), "use 1-4094")
			}
		} else {
			if itf.Parent != "" {
				add(f+".parent", "only a vlan has a parent", "remove parent, or set kind: vlan")
			}
			if itf.VLAN != 0 {
				add(f+".vlan", "only a vlan has a VLAN id", "remove vlan, or set kind: vlan")
			}
		}
		if kind != KindBridge && len(itf.Members) > 0 {
			add(f+".members", "only a bridge has members", "remove members, or set kind: bridge")
		}
		if kind == KindBridge {
			for k, m := range itf.Members {
				mf := fmt.Sprintf("%s.members[%d]", f, k)
				mi, ok := n.Find(m)
				switch {
				case !ok:
					add(mf, fmt.Sprintf("%q is not in network.interfaces", m), "list the member interface too")
					continue
				case m == itf.Name || mi.KindOrDefault() == KindBridge:
					add(mf, fmt.Sprintf("%q is a bridge", m), "bridges cannot be members of bridges")
					continue
				case mi.Role != "" || len(mi.Addresses) > 0 || mi.DHCP:
					add(mf, fmt.Sprintf("%q has a role, addresses or DHCP", m), "configure role, addresses and DHCP on the bridge, not on its members")
				}
				if j, dup := owner[m]; dup && j != i {
					add(mf, fmt.Sprintf("%q is also a member of network.interfaces[%d]", m, j), "a link can be in one bridge only")
				}
				owner[m] = i
			}
		}
		switch itf.Role {
		case "", RoleProvisioning:
		case RoleManagement:
			management = true
		case RoleUpstream:
			if upstream >= 0 {
				add(f+".role", fmt.Sprintf("network.interfaces[%d] is already the upstream", upstream), "give exactly one interface role: upstream")
			} else {
				upstream = i
			}
		default:
			add(f+".role", fmt.Sprintf("unknown role %q", itf.Role), "use management, provisioning or upstream (or leave it empty)")
		}
		if itf.DHCP && itf.Role != RoleUpstream && itf.Role != RoleManagement {
			add(f+".dhcp", fmt.Sprintf("a DHCP client runs only on upstream or management interfaces, not on role %q", itf.Role),
				"give the interface static addresses (kiln is the DHCP server on provisioning LANs)")
		}
		if itf.MTU != 0 && (itf.MTU < 576 || itf.MTU > 65535) {
			add(f+".mtu", fmt.Sprintf("%d is out of range", itf.MTU), "use 576-65535, or 0 to leave the MTU alone")
		}
		if kind == KindVLAN && itf.MTU != 0 {
			if p, ok := n.Find(itf.Parent); ok && p.MTU != 0 && itf.MTU > p.MTU {
				add(f+".mtu", fmt.Sprintf("%d is larger than the parent's mtu %d", itf.MTU, p.MTU), "a VLAN's MTU cannot exceed its parent's")
			}
		}
		for k, a := range itf.Addresses {
			af := fmt.Sprintf("%s.addresses[%d]", f, k)
			p, err := netip.ParsePrefix(a)
			if err != nil {
				add(af, fmt.Sprintf("%q is not an address with prefix length", a), "write address/length, e.g. 10.0.0.1/24 or fd00::1/64")
				continue
			}
			if p.Addr().Zone() != "" || p.Addr().Is4In6() {
				add(af, fmt.Sprintf("%q is not a plain IPv4 or IPv6 address", a), "write address/length, e.g. 10.0.0.1/24")
				continue
			}
			if p.Addr().Is4() && p.Bits() <= 30 && (p.Addr() == p.Masked().Addr() || p.Addr() == broadcast(p)) {
				add(af, fmt.Sprintf("%s is the network or broadcast address of %s", p.Addr(), p.Masked()), "use a host address")
				continue
			}
			for _, o := range all {
				if o.p.Addr() == p.Addr() {
					add(af, fmt.Sprintf("%s is also %s", p.Addr(), o.field), "every address belongs to one interface")
				} else if o.p.Overlaps(p) && !strings.HasPrefix(o.field, f+".") {
					add(af, fmt.Sprintf("%s overlaps %s %s", p.Masked(), o.field, o.p.Masked()), "interfaces need disjoint subnets")
				}
			}
			all = append(all, addrAt{p, af})
		}
	}
	if !management {
		add("network.interfaces", "no interface has role management", "give the interface operators reach kiln on role: management (without one the firewall blocks the API)")
	}
	for i, r := range n.Routes {
		n.validateRoute(fmt.Sprintf("network.routes[%d]", i), r, add)
	}
	n.validateResolver(add)

	// Provisioning subnets sit on provisioning interfaces, and kiln's own
	// address there is inside the subnet.
	for i, s := range c.Provisioning.Subnets {
		if s.Interface == "" || s.Mode == ModeOff {
			continue
		}
		f := fmt.Sprintf("provisioning.subnets[%d].interface", i)
		itf, ok := n.Find(s.Interface)
		if !ok {
			add(f, fmt.Sprintf("%q is not in network.interfaces", s.Interface), "name an interface listed under network.interfaces")
			continue
		}
		j := names[s.Interface]
		if itf.Role != RoleProvisioning {
			add(fmt.Sprintf("network.interfaces[%d].role", j), fmt.Sprintf("interface %q serves provisioning.subnets[%d] but has role %q", itf.Name, i, itf.Role),
				"set role: provisioning (the firewall opens the provisioning ports only there)")
		}
		prefix := s.Prefix()
		if !prefix.IsValid() {
			continue
		}
		var v4 []netip.Prefix
		for _, p := range itf.Prefixes() {
			if p.Addr().Is4() {
				v4 = append(v4, p)
			}
		}
		inside := false
		for k, p := range v4 {
			if prefix.Contains(p.Addr()) {
				inside = true
				if p.Masked() != prefix {
					add(fmt.Sprintf("network.interfaces[%d].addresses[%d]", j, k), fmt.Sprintf("%s has prefix /%d but provisioning.subnets[%d].cidr is %s", p, p.Bits(), i, prefix),
						fmt.Sprintf("use %s/%d", p.Addr(), prefix.Bits()))
				}
			}
		}
		if !inside {
			if len(v4) > 0 {
				add(fmt.Sprintf("network.interfaces[%d].addresses", j), fmt.Sprintf("%s is outside provisioning.subnets[%d].cidr %s", v4[0], i, prefix),
					fmt.Sprintf("give %s an address inside %s", itf.Name, prefix))
			} else {
				add(fmt.Sprintf("network.interfaces[%d].addresses", j), fmt.Sprintf("no address inside provisioning.subnets[%d].cidr %s", i, prefix),
					fmt.Sprintf("give %s a static address inside %s, e.g. %s/%d", itf.Name, prefix, prefix.Addr().Next(), prefix.Bits()))
			}
		}
	}

	hosts := c.Firewall.Masquerade.Hosts
	if len(hosts) > 0 && upstream < 0 {
		add("firewall.masquerade.hosts", "masquerade needs an upstream interface", "give one interface role: upstream, or remove the hosts")
	}
	var provPrefixes []netip.Prefix
	for _, itf := range n.WithRole(RoleProvisioning) {
		provPrefixes = append(provPrefixes, itf.Prefixes()...)
	}
	for i, h := range hosts {
		f := fmt.Sprintf("firewall.masquerade.hosts[%d]", i)
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is4() {
			add(f, fmt.Sprintf("%q is not an IPv4 address", h), "list the provisioning hosts' addresses, e.g. 10.0.0.50")
			continue
		}
		in := false
		for _, p := range provPrefixes {
			in = in || p.Contains(a)
		}
		if !in {
			add(f, fmt.Sprintf("%s is not on any provisioning interface's subnet", a), "list addresses of hosts on a provisioning LAN")
		}
	}
}

func (n Network) validateRoute(f string, r Route, add func(field, problem, fix string)) {
	var dst netip.Prefix
	switch {
	case r.To == "":
		add(f+".to", "missing", "set the destination, e.g. to: 192.168.0.0/16 or to: default")
		return
	case r.To == "default":
	default:
		p, err := netip.ParsePrefix(r.To)
		if err != nil {
			add(f+".to", fmt.Sprintf("%q is not a network", r.To), "write address/length, e.g. 192.168.0.0/16, or default")
			return
		}
		if p.Masked() != p {
			add(f+".to", fmt.Sprintf("%s has host bits set", r.To), fmt.Sprintf("use %s", p.Masked()))
			return
		}
		dst = p
	}
	var gw netip.Addr
	if r.Via != "" {
		a, err := netip.ParseAddr(r.Via)
		if err != nil || a.Zone() != "" {
			add(f+".via", fmt.Sprintf("%q is not an IP address", r.Via), "use the gateway's address, e.g. 10.0.0.254")
			return
		}
		gw = a
		if dst.IsValid() && dst.Addr().Is4() != gw.Is4() {
			add(f+".via", fmt.Sprintf("%s and destination %s are different IP versions", gw, dst), "use a gateway of the destination's IP version")
			return
		}
	} else if r.Interface == "" {
		add(f+".via", "missing", "set the gateway (via), the interface, or both")
		return
	}
	if r.Metric < 0 || r.Metric > 1<<31-1 {
		add(f+".metric", fmt.Sprintf("%d is out of range", r.Metric), "use 0 or a positive number")
	}
	var cands []Interface
	if r.Interface != "" {
		itf, ok := n.Find(r.Interface)
		if !ok {
			add(f+".interface", fmt.Sprintf("%q is not in network.interfaces", r.Interface), "name an interface listed under network.interfaces")
			return
		}
		cands = []Interface{itf}
	} else {
		cands = n.Interfaces
	}
	if !gw.IsValid() {
		return
	}
	for _, itf := range cands {
		if itf.DHCP {
			return // the lease may put the gateway on-link
		}
		for _, p := range itf.Prefixes() {
			if p.Masked().Contains(gw) {
				return
			}
		}
	}
	where := "any interface"
	if r.Interface != "" {
		where = "interface " + r.Interface
	}
	add(f+".via", fmt.Sprintf("%s is not on a subnet of %s", gw, where), "use a gateway on a directly connected subnet")
}

func (n Network) validateResolver(add func(field, problem, fix string)) {
	for i, s := range n.Resolver.Nameservers {
		if a, err := netip.ParseAddr(s); err != nil || a.Zone() != "" {
			add(fmt.Sprintf("network.resolver.nameservers[%d]", i), fmt.Sprintf("%q is not an IP address", s), "use an address like 192.0.2.53")
		}
	}
	for i, d := range n.Resolver.Search {
		if !validDomain(d) {
			add(fmt.Sprintf("network.resolver.search[%d]", i), fmt.Sprintf("%q is not a valid DNS domain", d), "use a domain like hall.example")
		}
	}
}

// validatePorts reports two kiln services that would listen on one port.
func (c Config) validatePorts(add func(field, problem, fix string)) {
	if len(c.Provisioning.Subnets) == 0 {
		return
	}
	for field, p := range map[string]int{"management.https_port": c.Management.HTTPSPort, "management.http_port": c.Management.HTTPPort} {
		if p == 0 {
			continue
		}
		for _, pp := range ProvisioningPorts(c.Provisioning) {
			if pp.Proto == "tcp" && pp.Port == p {
				add(field, fmt.Sprintf("port %d is also the %s port of the provisioning services", p, pp.Service), "choose another management port")
				break
			}
		}
	}
}

func validIfname(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}
