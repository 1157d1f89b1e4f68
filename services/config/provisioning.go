package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Provisioning configures the services that network-boot machines on the LAN:
// DHCP, DNS, TFTP and HTTP boot. Addresses are kept as strings so validation
// can name the exact field; the accessor methods return parsed values and are
// only meaningful on a validated config.
type Provisioning struct {
	// Domain is the site's DNS domain handed to clients (option 15) and served
	// authoritatively by the DNS service, e.g. "hall.example".
	Domain string `yaml:"domain"`
	// UpstreamDNS are resolvers the DNS service forwards other names to
	// ("192.0.2.53" or "192.0.2.53:53").
	UpstreamDNS []string `yaml:"upstream_dns"`
	// Subnets are the IPv4 networks kiln provisions.
	Subnets []Subnet `yaml:"subnets"`
	// HostsFile is a hosts file (YAML or CSV, the format of `kiln hosts
	// import`) imported into the machine database every time the services
	// start: its hosts are created, or updated by name; hosts it does not
	// list are left alone. Empty: none.
	HostsFile string `yaml:"hosts_file"`
	// DNS, TFTP and HTTPBoot configure the provisioning services' listeners
	// and files; every field has a default.
	DNS      DNSService      `yaml:"dns"`
	TFTP     TFTPService     `yaml:"tftp"`
	HTTPBoot HTTPBootService `yaml:"http_boot"`
	// ISCSI configures the iscsi service's volumes (the quota reserve).
	ISCSI ISCSIService `yaml:"iscsi"`
	// NFS configures the nfs service's exports for diskless machines.
	NFS NFSService `yaml:"nfs"`
	// Diskless configures registration of unknown machines at their console.
	Diskless Diskless `yaml:"diskless"`
}

// DNSService configures the DNS service.
type DNSService struct {
	// Listen is the UDP and TCP address; empty means DefaultDNSListen.
	// Clients only ask port 53: another port is for tests and for running
	// beside another DNS server.
	Listen string `yaml:"listen"`
}

// TFTPService configures the TFTP service.
type TFTPService struct {
	// Listen is the UDP address; empty means DefaultTFTPListen. PXE firmware
	// only asks port 69.
	Listen string `yaml:"listen"`
	// Root is the directory served; empty means DefaultTFTPRoot (the image's
	// iPXE binaries), or <state>/tftp on a host without it.
	Root string `yaml:"root"`
	// MaxBlockSize caps the negotiated blksize (RFC 2348) below the link's
	// MTU - 32; 0: the MTU alone decides.
	MaxBlockSize int `yaml:"max_blksize"`
	// MaxWindowSize caps the negotiated windowsize (RFC 7440); 0: 64.
	MaxWindowSize int `yaml:"max_windowsize"`
	// MaxTransfers caps concurrent transfers (0: 64), MaxPerClient those of
	// one client address (0: 4).
	MaxTransfers int `yaml:"max_transfers"`
	MaxPerClient int `yaml:"max_per_client"`
}

// HTTPBootService configures the HTTP boot service.
type HTTPBootService struct {
	// Listen is the TCP address; empty means ":" + DefaultHTTPBootPort.
	// Scripts point clients at this port unless a subnet sets boot.http_base.
	Listen string `yaml:"listen"`
	// Root is the directory of boot artifacts served under /files/; empty
	// means <state>/boot.
	Root string `yaml:"root"`
	// VetImage is the directory of the vetting live image (vmlinuz,
	// initrd) served as /files/vet/…; empty means the image's own,
	// DefaultVetImage.
	VetImage string `yaml:"vet_image"`
	// DisklessImage is the directory of the diskless client image
	// (vmlinuz, initrd) served as /files/diskless/…; empty means the
	// image's own, DefaultDisklessImage.
	DisklessImage string `yaml:"diskless_image"`
}

// DefaultVetImage is where the appliance image keeps its vetting live image.
const DefaultVetImage = "/usr/lib/kiln/vet"

// DefaultDisklessImage is where the appliance image keeps its diskless
// client image.
const DefaultDisklessImage = "/usr/lib/kiln/diskless"

// Subnet modes.
const (
	// ModeAuthoritative: kiln is the DHCP server of the subnet and hands out addresses.
	ModeAuthoritative = "authoritative"
	// ModeProxy: another server hands out addresses; kiln answers PXE clients with
	// boot information only (proxyDHCP, PXE spec 2.1).
	ModeProxy = "proxy"
	// ModeOff: kiln's DHCP ignores the subnet.
	ModeOff = "off"
)

// Foreign DHCP policies: what an authoritative subnet does when another DHCP
// server answers on its link at start.
const (
	ForeignRefuse = "refuse" // do not serve the subnet, report the other server
	ForeignWarn   = "warn"   // log a warning and serve anyway
)

// Defaults applied when a field is empty.
const (
	DefaultLeaseTime    = 12 * time.Hour
	DefaultHTTPBootPort = 8080 // port of the HTTP boot service unless provisioning.http_boot.listen says otherwise
	DefaultDNSListen    = ":53"
	DefaultTFTPListen   = ":69"
	DefaultTFTPRoot     = "/usr/share/kiln/ipxe"
)

// Subnet is one provisioned IPv4 network.
type Subnet struct {
	// Name identifies the subnet in leases and logs (e.g. "hall-a").
	Name string `yaml:"name"`
	// Interface is the local interface attached to the subnet. Empty means the
	// subnet is reached through a DHCP relay (requests carry giaddr in CIDR).
	Interface string `yaml:"interface"`
	// CIDR is the network, e.g. "10.0.0.0/24".
	CIDR string `yaml:"cidr"`
	// Mode is authoritative, proxy or off.
	Mode string `yaml:"mode"`
	// Pool is the dynamic range for machines without a reservation (authoritative only).
	Pool Pool `yaml:"pool"`
	// Router is the default gateway (option 3); empty sends none.
	Router string `yaml:"router"`
	// DNS servers (option 6); empty means kiln's own address on the subnet.
	DNS []string `yaml:"dns"`
	// NTP servers (option 42).
	NTP []string `yaml:"ntp"`
	// MTU is the interface MTU (option 26); 0 sends none.
	MTU int `yaml:"mtu"`
	// Syslog servers (option 7).
	Syslog []string `yaml:"syslog"`
	// LeaseTime of dynamic and reserved leases; 0 means DefaultLeaseTime.
	LeaseTime time.Duration `yaml:"lease_time"`
	// Boot says where network boot programs and scripts come from.
	Boot Boot `yaml:"boot"`
	// ForeignDHCP is the policy when another DHCP server answers on the link:
	// refuse (default) or warn. Only used by authoritative subnets.
	ForeignDHCP string `yaml:"foreign_dhcp"`
	// ConflictProbe checks that a pool address is unused (ARP on a local
	// link, ping through a relay) before offering it; default true. Like
	// dnsmasq's --no-ping, false trades that safety for speed.
	ConflictProbe *bool `yaml:"conflict_probe"`
}

// Probe reports whether pool addresses are probed before they are offered.
func (s Subnet) Probe() bool { return s.ConflictProbe == nil || *s.ConflictProbe }

// Pool is an inclusive address range.
type Pool struct {
	Start string `yaml:"start"`
	End   string `yaml:"end"`
}

// Boot locates network boot resources.
type Boot struct {
	// HTTPBase is the URL prefix iPXE fetches scripts from
	// (<http_base>/boot/<mac>.ipxe); empty means http://<kiln's address>:8080.
	HTTPBase string `yaml:"http_base"`
	// TFTPServer is the TFTP address (siaddr, option 66); empty means kiln's address.
	TFTPServer string `yaml:"tftp_server"`
}

// Prefix returns the parsed CIDR (zero if invalid).
func (s Subnet) Prefix() netip.Prefix {
	p, _ := netip.ParsePrefix(s.CIDR)
	return p
}

// PoolRange returns the parsed pool bounds; both are zero when there is no pool.
func (s Subnet) PoolRange() (start, end netip.Addr) {
	start, _ = netip.ParseAddr(s.Pool.Start)
	end, _ = netip.ParseAddr(s.Pool.End)
	return start, end
}

// RouterAddr returns the parsed router (zero if none).
func (s Subnet) RouterAddr() netip.Addr {
	a, _ := netip.ParseAddr(s.Router)
	return a
}

// DNSAddrs, NTPAddrs and SyslogAddrs return the parsed server lists.
func (s Subnet) DNSAddrs() []netip.Addr    { return parseAddrs(s.DNS) }
func (s Subnet) NTPAddrs() []netip.Addr    { return parseAddrs(s.NTP) }
func (s Subnet) SyslogAddrs() []netip.Addr { return parseAddrs(s.Syslog) }

// Lease returns the lease time with the default applied.
func (s Subnet) Lease() time.Duration {
	if s.LeaseTime == 0 {
		return DefaultLeaseTime
	}
	return s.LeaseTime
}

// Foreign returns the foreign-DHCP policy with the default applied.
func (s Subnet) Foreign() string {
	if s.ForeignDHCP == "" {
		return ForeignRefuse
	}
	return s.ForeignDHCP
}

// HTTPBase returns boot.http_base without a trailing slash, or the base URL
// of a kiln reachable at self whose HTTP boot service listens on port (0:
// DefaultHTTPBootPort; see Provisioning.HTTPBootPort).
func (s Subnet) HTTPBase(self netip.Addr, port int) string {
	if s.Boot.HTTPBase != "" {
		return strings.TrimRight(s.Boot.HTTPBase, "/")
	}
	if port == 0 {
		port = DefaultHTTPBootPort
	}
	return fmt.Sprintf("http://%s:%d", self, port)
}

// DNSListen, TFTPListen and HTTPBootListen return the services' listen
// addresses with the defaults applied.
func (p Provisioning) DNSListen() string  { return or(p.DNS.Listen, DefaultDNSListen) }
func (p Provisioning) TFTPListen() string { return or(p.TFTP.Listen, DefaultTFTPListen) }
func (p Provisioning) HTTPBootListen() string {
	return or(p.HTTPBoot.Listen, ":"+strconv.Itoa(DefaultHTTPBootPort))
}

// HTTPBootPort returns the HTTP boot service's port.
func (p Provisioning) HTTPBootPort() int {
	_, port, _ := splitListen(p.HTTPBootListen())
	return port
}

// ServicePorts returns the ports the provisioning services listen on as
// configured (DHCP's are fixed: 67, and 4011 with a proxy subnet). The
// firewall opens these on provisioning interfaces.
func (p Provisioning) ServicePorts() []Port {
	ports := []Port{{"udp", 67, "DHCP server"}}
	for _, s := range p.Subnets {
		if s.Mode == ModeProxy {
			ports = append(ports, Port{"udp", 4011, "proxyDHCP"})
			break
		}
	}
	for _, l := range []struct{ proto, addr, what string }{
		{"udp", p.DNSListen(), "DNS"}, {"tcp", p.DNSListen(), "DNS"},
		{"udp", p.TFTPListen(), "TFTP"}, {"tcp", p.HTTPBootListen(), "HTTP boot"},
	} {
		if _, port, err := splitListen(l.addr); err == nil {
			ports = append(ports, Port{l.proto, port, l.what})
		}
	}
	return ports
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// splitListen parses "host:port" or ":port"; host must be an IP address.
func splitListen(s string) (netip.Addr, int, error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return netip.Addr{}, 0, fmt.Errorf("port %q is not 1-65535", ps)
	}
	if host == "" {
		return netip.Addr{}, port, nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, 0, fmt.Errorf("%q is not an IP address", host)
	}
	return a.Unmap(), port, nil
}

// TFTPAddr returns boot.tftp_server, or self when empty.
func (s Subnet) TFTPAddr(self netip.Addr) netip.Addr {
	if a, err := netip.ParseAddr(s.Boot.TFTPServer); err == nil {
		return a
	}
	return self
}

func parseAddrs(ss []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// validate appends every problem of the provisioning section to errs.
func (p Provisioning) validate(add func(field, problem, fix string)) {
	if p.Domain != "" && !validDomain(p.Domain) {
		add("provisioning.domain", fmt.Sprintf("%q is not a valid DNS domain", p.Domain), "use dot-separated labels of letters, digits and '-', e.g. hall.example")
	}
	for i, u := range p.UpstreamDNS {
		if _, err := netip.ParseAddr(u); err == nil {
			continue
		}
		if ap, err := netip.ParseAddrPort(u); err == nil && ap.Port() != 0 {
			continue
		}
		add(fmt.Sprintf("provisioning.upstream_dns[%d]", i), fmt.Sprintf("%q is not an IP address", u), "use an address like 192.0.2.53 or 192.0.2.53:53")
	}
	for _, l := range []struct{ field, val string }{
		{"provisioning.dns.listen", p.DNS.Listen}, {"provisioning.tftp.listen", p.TFTP.Listen}, {"provisioning.http_boot.listen", p.HTTPBoot.Listen},
	} {
		if l.val == "" {
			continue
		}
		if _, _, err := splitListen(l.val); err != nil {
			add(l.field, fmt.Sprintf("%q: %v", l.val, err), "use address:port or :port with an IP address, e.g. :69 or 10.0.0.1:69")
		}
	}
	for _, r := range []struct{ field, val string }{
		{"provisioning.tftp.root", p.TFTP.Root}, {"provisioning.http_boot.root", p.HTTPBoot.Root}, {"provisioning.http_boot.vet_image", p.HTTPBoot.VetImage},
		{"provisioning.http_boot.diskless_image", p.HTTPBoot.DisklessImage}, {"provisioning.hosts_file", p.HostsFile},
	} {
		if r.val != "" && !filepath.IsAbs(r.val) {
			add(r.field, fmt.Sprintf("%q is not an absolute path", r.val), "use a path starting with /")
		}
	}
	p.ISCSI.validate(add)
	if b := p.TFTP.MaxBlockSize; b != 0 && (b < 512 || b > 65464) {
		add("provisioning.tftp.max_blksize", fmt.Sprintf("%d is out of range", b), "use 512-65464, or 0 to let the link MTU decide")
	}
	for _, n := range []struct {
		field string
		val   int
		max   int
	}{
		{"provisioning.tftp.max_windowsize", p.TFTP.MaxWindowSize, 65535},
		{"provisioning.tftp.max_transfers", p.TFTP.MaxTransfers, 10000},
		{"provisioning.tftp.max_per_client", p.TFTP.MaxPerClient, 10000},
	} {
		if n.val < 0 || n.val > n.max {
			add(n.field, fmt.Sprintf("%d is out of range", n.val), fmt.Sprintf("use 1-%d, or 0 for the default", n.max))
		}
	}
	p.NFS.validate(add)
	p.Diskless.validate(p.NFS, add)
	names := map[string]int{}
	for i, s := range p.Subnets {
		f := fmt.Sprintf("provisioning.subnets[%d]", i)
		s.validate(f, add)
		if s.Name != "" {
			if j, dup := names[s.Name]; dup {
				add(f+".name", fmt.Sprintf("%q is also the name of provisioning.subnets[%d]", s.Name, j), "give every subnet its own name")
			}
			names[s.Name] = i
		}
		pi := s.Prefix()
		if !pi.IsValid() || s.Mode == ModeOff {
			continue
		}
		for j := range i {
			pj := p.Subnets[j].Prefix()
			if pj.IsValid() && p.Subnets[j].Mode != ModeOff && pi.Overlaps(pj) {
				add(f+".cidr", fmt.Sprintf("%s overlaps provisioning.subnets[%d].cidr %s", pi, j, pj), "make subnets disjoint, or set one to mode: off")
			}
		}
	}
}

func (s Subnet) validate(f string, add func(field, problem, fix string)) {
	if s.Name == "" {
		add(f+".name", "missing", "name the subnet, e.g. name: hall-a")
	} else if !validHostname(s.Name) {
		add(f+".name", fmt.Sprintf("%q is not a valid name", s.Name), "use 1-63 letters, digits and '-'")
	}
	switch s.Mode {
	case ModeAuthoritative, ModeProxy, ModeOff:
	case "":
		add(f+".mode", "missing", "set mode: authoritative (kiln hands out addresses), proxy (another DHCP server does) or off")
	default:
		add(f+".mode", fmt.Sprintf("unknown mode %q", s.Mode), "use authoritative, proxy or off")
	}
	if len(s.Interface) > 15 || strings.ContainsAny(s.Interface, "/ \t") {
		add(f+".interface", fmt.Sprintf("%q is not a valid interface name", s.Interface), "use the name shown by `ip link`, at most 15 characters")
	}
	if s.Mode == ModeProxy && s.Interface == "" {
		add(f+".interface", "missing", "proxy mode answers on a local link: name the interface attached to the subnet")
	}
	prefix, err := netip.ParsePrefix(s.CIDR)
	switch {
	case s.CIDR == "":
		add(f+".cidr", "missing", "set the network, e.g. cidr: 10.0.0.0/24")
		return
	case err != nil || !prefix.Addr().Is4():
		add(f+".cidr", fmt.Sprintf("%q is not an IPv4 network", s.CIDR), "use address/length, e.g. 10.0.0.0/24")
		return
	case prefix.Masked() != prefix:
		add(f+".cidr", fmt.Sprintf("%s has host bits set", s.CIDR), fmt.Sprintf("use %s", prefix.Masked()))
		return
	case prefix.Bits() > 30:
		add(f+".cidr", fmt.Sprintf("%s is too small for DHCP", s.CIDR), "use a prefix of /30 or shorter")
		return
	}
	// host reports whether a is a usable host address of the subnet.
	host := func(field, val string, required bool) (netip.Addr, bool) {
		if val == "" {
			if required {
				add(field, "missing", fmt.Sprintf("set an address inside %s", prefix))
			}
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(val)
		if err != nil || !a.Is4() {
			add(field, fmt.Sprintf("%q is not an IPv4 address", val), fmt.Sprintf("use an address inside %s", prefix))
			return netip.Addr{}, false
		}
		if !prefix.Contains(a) {
			add(field, fmt.Sprintf("%s is outside cidr %s", a, prefix), fmt.Sprintf("use an address inside %s", prefix))
			return netip.Addr{}, false
		}
		if a == prefix.Addr() || a == broadcast(prefix) {
			add(field, fmt.Sprintf("%s is the network or broadcast address of %s", a, prefix), "use a host address")
			return netip.Addr{}, false
		}
		return a, true
	}
	router, hasRouter := host(f+".router", s.Router, false)
	switch s.Mode {
	case ModeAuthoritative:
		start, okS := host(f+".pool.start", s.Pool.Start, true)
		end, okE := host(f+".pool.end", s.Pool.End, true)
		if okS && okE && end.Less(start) {
			add(f+".pool.end", fmt.Sprintf("%s is before pool.start %s", end, start), "swap start and end")
		} else if okS && okE && hasRouter && !router.Less(start) && !end.Less(router) {
			add(f+".router", fmt.Sprintf("%s is inside the pool %s-%s", router, start, end), "move the router out of the pool or shrink the pool")
		}
	case ModeProxy:
		if s.Pool != (Pool{}) {
			add(f+".pool", "a proxy subnet has no pool", "remove pool: the other DHCP server hands out addresses, or use mode: authoritative")
		}
	}
	for _, l := range []struct {
		name string
		list []string
	}{{"dns", s.DNS}, {"ntp", s.NTP}, {"syslog", s.Syslog}} {
		name := l.name
		for i, v := range l.list {
			if a, err := netip.ParseAddr(v); err != nil || !a.Is4() {
				add(fmt.Sprintf("%s.%s[%d]", f, name, i), fmt.Sprintf("%q is not an IPv4 address", v), "use an address like 192.0.2.1")
			}
		}
	}
	if s.MTU != 0 && (s.MTU < 576 || s.MTU > 65535) {
		add(f+".mtu", fmt.Sprintf("%d is out of range", s.MTU), "use 576-65535, or 0 to send no MTU")
	}
	if s.LeaseTime != 0 && (s.LeaseTime < time.Minute || s.LeaseTime > 365*24*time.Hour) {
		add(f+".lease_time", fmt.Sprintf("%s is out of range", s.LeaseTime), "use a duration between 1m and 8760h, e.g. 12h")
	}
	if b := s.Boot.HTTPBase; b != "" {
		u, err := url.Parse(b)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			add(f+".boot.http_base", fmt.Sprintf("%q is not an http(s) URL", b), "use a base URL like http://10.0.0.1:8080 (no query)")
		}
	}
	if t := s.Boot.TFTPServer; t != "" {
		if a, err := netip.ParseAddr(t); err != nil || !a.Is4() {
			add(f+".boot.tftp_server", fmt.Sprintf("%q is not an IPv4 address", t), "use the TFTP server's address, or leave it empty for kiln itself")
		}
	}
	switch s.ForeignDHCP {
	case "", ForeignRefuse, ForeignWarn:
	default:
		add(f+".foreign_dhcp", fmt.Sprintf("unknown policy %q", s.ForeignDHCP), "use refuse or warn")
	}
}

// broadcast returns the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if !validHostname(l) {
			return false
		}
	}
	return true
}

// listener is one socket a kiln service binds.
type listener struct {
	field   string // the config field that sets it
	service string
	proto   string
	addr    netip.Addr // zero: every address
	port    int
}

// listeners returns the sockets the enabled provisioning services bind, in
// the order their conflicts are reported (a fixed port first, so the message
// lands on a field the operator can change). The management ports are
// checked against these by validatePorts (network.go), whose list the
// firewall opens, and against each other in Validate.
func (c Config) listeners() []listener {
	var ls []listener
	p := c.Provisioning
	on := func(name string) bool { return c.Enabled(name, len(p.Subnets) > 0) }
	if on("dhcp") {
		ls = append(ls, listener{"provisioning.subnets", "the DHCP server", "udp", netip.Addr{}, 67})
		for _, s := range p.Subnets {
			if s.Mode == ModeProxy {
				ls = append(ls, listener{"provisioning.subnets", "proxyDHCP", "udp", netip.Addr{}, 4011})
				break
			}
		}
	}
	add := func(field, service, proto, addr string) {
		if a, port, err := splitListen(addr); err == nil {
			ls = append(ls, listener{field, service, proto, a, port})
		}
	}
	if on("dns") {
		add("provisioning.dns.listen", "the DNS server", "udp", p.DNSListen())
		add("provisioning.dns.listen", "the DNS server", "tcp", p.DNSListen())
	}
	if on("tftp") {
		add("provisioning.tftp.listen", "the TFTP server", "udp", p.TFTPListen())
	}
	if on("httpboot") {
		add("provisioning.http_boot.listen", "the HTTP boot server", "tcp", p.HTTPBootListen())
	}
	if c.Enabled("syslog", c.SyslogByDefault()) {
		add("syslog.listen", "the syslog server", "udp", c.Syslog.ListenAddr())
		add("syslog.listen", "the syslog server", "tcp", c.Syslog.ListenAddr())
	}
	if c.Enabled("ntp", c.NTPByDefault()) {
		add("ntp.listen", "the NTP server", "udp", c.NTP.ListenAddr())
	}
	return ls
}

// validateListeners reports two enabled provisioning services that would
// bind the same port on overlapping addresses.
func (c Config) validateListeners(add func(field, problem, fix string)) {
	ls := c.listeners()
	for i, l := range ls {
		for _, o := range ls[:i] {
			if o.proto != l.proto || o.port != l.port || o.service == l.service ||
				(l.addr.IsValid() && o.addr.IsValid() && l.addr != o.addr) {
				continue
			}
			add(l.field, fmt.Sprintf("%s port %d of %s is also the port of %s (%s)", strings.ToUpper(l.proto), l.port, l.service, o.service, o.field),
				"give every service its own port, or bind them to different addresses")
			break
		}
	}
}
