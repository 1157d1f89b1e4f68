package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const goodProvisioning = `
provisioning:
  domain: hall.example
  upstream_dns: [192.0.2.53, "192.0.2.54:5353"]
  subnets:
    - name: hall-a
      interface: eth1
      cidr: 10.0.0.0/24
      mode: authoritative
      pool: {start: 10.0.0.100, end: 10.0.0.199}
      router: 10.0.0.254
      dns: [10.0.0.1]
      ntp: [10.0.0.1]
      syslog: [10.0.0.1]
      mtu: 9000
      lease_time: 2h
      boot: {http_base: "http://10.0.0.1:8080/", tftp_server: 10.0.0.1}
      foreign_dhcp: warn
    - name: office
      interface: eth0
      cidr: 192.168.1.0/24
      mode: proxy
    - name: hall-b
      cidr: 10.1.0.0/24
      mode: authoritative
      pool: {start: 10.1.0.10, end: 10.1.0.20}
`

func TestProvisioningParse(t *testing.T) {
	c, err := Parse(strings.NewReader(goodProvisioning))
	if err != nil {
		t.Fatalf("Parse(good) = %v", err)
	}
	p := c.Provisioning
	if len(p.Subnets) != 3 {
		t.Fatalf("Parse(good) has %d subnets, want 3", len(p.Subnets))
	}
	a, office := p.Subnets[0], p.Subnets[1]
	self := netip.MustParseAddr("10.0.0.1")
	start, end := a.PoolRange()
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"Prefix", a.Prefix(), netip.MustParsePrefix("10.0.0.0/24")},
		{"PoolRange start", start, netip.MustParseAddr("10.0.0.100")},
		{"PoolRange end", end, netip.MustParseAddr("10.0.0.199")},
		{"RouterAddr", a.RouterAddr(), netip.MustParseAddr("10.0.0.254")},
		{"Lease", a.Lease(), 2 * time.Hour},
		{"Lease default", office.Lease(), DefaultLeaseTime},
		{"HTTPBase", a.HTTPBase(self, 9999), "http://10.0.0.1:8080"},
		{"HTTPBase default", office.HTTPBase(netip.MustParseAddr("192.168.1.5"), 0), "http://192.168.1.5:8080"},
		{"HTTPBase port", office.HTTPBase(netip.MustParseAddr("192.168.1.5"), 8081), "http://192.168.1.5:8081"},
		{"HTTPBootPort default", p.HTTPBootPort(), DefaultHTTPBootPort},
		{"DNSListen default", p.DNSListen(), ":53"},
		{"TFTPListen default", p.TFTPListen(), ":69"},
		{"TFTPAddr default", office.TFTPAddr(self), self},
		{"Foreign", a.Foreign(), ForeignWarn},
		{"Foreign default", office.Foreign(), ForeignRefuse},
		{"DNSAddrs", len(a.DNSAddrs()), 1},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestProvisioningValidate(t *testing.T) {
	sub := func(fields string) string {
		return "provisioning:\n  subnets:\n    - name: a\n      interface: eth1\n" + fields
	}
	auth := "      cidr: 10.0.0.0/24\n      mode: authoritative\n      pool: {start: 10.0.0.100, end: 10.0.0.199}\n"
	tests := []struct {
		name string
		in   string
		want []string // each must appear
	}{
		{"mode missing", sub("      cidr: 10.0.0.0/24\n"), []string{"provisioning.subnets[0].mode: missing (set mode: authoritative"}},
		{"mode unknown", sub("      cidr: 10.0.0.0/24\n      mode: dhcp\n"), []string{"provisioning.subnets[0].mode: unknown mode \"dhcp\""}},
		{"cidr host bits", sub("      cidr: 10.0.0.5/24\n      mode: off\n"), []string{"provisioning.subnets[0].cidr: 10.0.0.5/24 has host bits set (use 10.0.0.0/24)"}},
		{"cidr v6", sub("      cidr: fd00::/64\n      mode: off\n"), []string{"provisioning.subnets[0].cidr: \"fd00::/64\" is not an IPv4 network"}},
		{"pool missing", sub("      cidr: 10.0.0.0/24\n      mode: authoritative\n"), []string{"provisioning.subnets[0].pool.start: missing", "provisioning.subnets[0].pool.end: missing"}},
		{"pool outside", sub("      cidr: 10.0.0.0/24\n      mode: authoritative\n      pool: {start: 10.0.0.10, end: 10.0.1.20}\n"),
			[]string{"provisioning.subnets[0].pool.end: 10.0.1.20 is outside cidr 10.0.0.0/24 (use an address inside 10.0.0.0/24)"}},
		{"pool reversed", sub("      cidr: 10.0.0.0/24\n      mode: authoritative\n      pool: {start: 10.0.0.20, end: 10.0.0.10}\n"),
			[]string{"provisioning.subnets[0].pool.end: 10.0.0.10 is before pool.start 10.0.0.20 (swap start and end)"}},
		{"pool broadcast", sub("      cidr: 10.0.0.0/24\n      mode: authoritative\n      pool: {start: 10.0.0.20, end: 10.0.0.255}\n"),
			[]string{"provisioning.subnets[0].pool.end: 10.0.0.255 is the network or broadcast address"}},
		{"router outside", sub(auth + "      router: 10.9.0.1\n"), []string{"provisioning.subnets[0].router: 10.9.0.1 is outside cidr"}},
		{"router in pool", sub(auth + "      router: 10.0.0.150\n"), []string{"provisioning.subnets[0].router: 10.0.0.150 is inside the pool"}},
		{"proxy pool", sub("      cidr: 10.0.0.0/24\n      mode: proxy\n      pool: {start: 10.0.0.100, end: 10.0.0.199}\n"),
			[]string{"provisioning.subnets[0].pool: a proxy subnet has no pool"}},
		{"proxy no interface", "provisioning:\n  subnets:\n    - name: a\n      cidr: 10.0.0.0/24\n      mode: proxy\n",
			[]string{"provisioning.subnets[0].interface: missing"}},
		{"dns", sub(auth + "      dns: [10.0.0.1, nope]\n"), []string{"provisioning.subnets[0].dns[1]: \"nope\" is not an IPv4 address"}},
		{"mtu", sub(auth + "      mtu: 100\n"), []string{"provisioning.subnets[0].mtu: 100 is out of range"}},
		{"lease", sub(auth + "      lease_time: 10s\n"), []string{"provisioning.subnets[0].lease_time: 10s is out of range"}},
		{"http_base", sub(auth + "      boot: {http_base: \"ftp://x\"}\n"), []string{"provisioning.subnets[0].boot.http_base: \"ftp://x\" is not an http(s) URL"}},
		{"tftp", sub(auth + "      boot: {tftp_server: kiln.local}\n"), []string{"provisioning.subnets[0].boot.tftp_server:"}},
		{"foreign", sub(auth + "      foreign_dhcp: ignore\n"), []string{"provisioning.subnets[0].foreign_dhcp: unknown policy \"ignore\" (use refuse or warn)"}},
		{"name", "provisioning:\n  subnets:\n    - cidr: 10.0.0.0/24\n      mode: off\n", []string{"provisioning.subnets[0].name: missing"}},
		{"domain", "provisioning:\n  domain: -bad-.example\n", []string{"provisioning.domain:"}},
		{"upstream", "provisioning:\n  upstream_dns: [dns.google]\n", []string{"provisioning.upstream_dns[0]: \"dns.google\" is not an IP address"}},
		{"overlap and duplicate name", "provisioning:\n  subnets:\n" +
			"    - {name: a, interface: eth1, cidr: 10.0.0.0/16, mode: proxy}\n" +
			"    - {name: a, interface: eth2, cidr: 10.0.5.0/24, mode: proxy}\n",
			[]string{"provisioning.subnets[1].cidr: 10.0.5.0/24 overlaps provisioning.subnets[0].cidr 10.0.0.0/16",
				"provisioning.subnets[1].name: \"a\" is also the name of provisioning.subnets[0]"}},
		{"listen addresses", "provisioning:\n  dns: {listen: \"53\"}\n  tftp: {listen: \"kiln:69\"}\n  http_boot: {listen: \":70000\"}\n",
			[]string{"provisioning.dns.listen: \"53\": address 53: missing port in address (use address:port or :port",
				"provisioning.tftp.listen: \"kiln:69\": \"kiln\" is not an IP address",
				"provisioning.http_boot.listen: \":70000\": port \"70000\" is not 1-65535"}},
		{"relative paths", "provisioning:\n  hosts_file: hosts.yaml\n  tftp: {root: ipxe}\n  http_boot: {root: ./boot}\n",
			[]string{"provisioning.hosts_file: \"hosts.yaml\" is not an absolute path", "provisioning.tftp.root: \"ipxe\" is not an absolute path",
				"provisioning.http_boot.root: \"./boot\" is not an absolute path"}},
		{"tftp limits", "provisioning:\n  tftp: {max_blksize: 100, max_windowsize: 70000, max_transfers: -1}\n",
			[]string{"provisioning.tftp.max_blksize: 100 is out of range (use 512-65464", "provisioning.tftp.max_windowsize: 70000 is out of range",
				"provisioning.tftp.max_transfers: -1 is out of range"}},
		{"iscsi reserve percentage", "provisioning:\n  iscsi: {reserve: 95%}\n",
			[]string{`provisioning.iscsi.reserve: "95%": a percentage must be a whole number from 1 to 90 (use a whole percentage of the data partition from 1% to 90% (e.g. 10%) or a size of at least 64M (e.g. 4G))`}},
		{"iscsi reserve too small", "provisioning:\n  iscsi: {reserve: 32M}\n",
			[]string{`provisioning.iscsi.reserve: "32M": less than the 64 MiB the appliance needs for its database and logs`}},
		{"iscsi reserve not a size", "provisioning:\n  iscsi: {reserve: 4GB}\n", []string{`provisioning.iscsi.reserve: "4GB": not a percentage or a size`}},
		{"iscsi reserve size", "provisioning:\n  iscsi: {reserve: 4G}\n", nil},
		{"tftp on the DHCP port", sub(auth + "  tftp: {listen: \":67\"}\n"),
			[]string{"provisioning.tftp.listen: UDP port 67 of the TFTP server is also the port of the DHCP server (provisioning.subnets)"}},
		{"http boot on the management port", sub(auth + "  http_boot: {listen: \"10.0.0.1:443\"}\n"),
			[]string{"management.https_port: port 443 is also the HTTP boot port of the provisioning services"}},
		{"management beside a moved HTTP boot port", sub(auth + "  http_boot: {listen: \":8081\"}\n  tftp: {listen: \":8080\"}\nmanagement: {http_port: 8080}\n"), nil},
		{"dns and tftp share a port", sub(auth + "  dns: {listen: \":5353\"}\n  tftp: {listen: \"127.0.0.1:5353\"}\n"),
			[]string{"provisioning.tftp.listen: UDP port 5353 of the TFTP server is also the port of the DNS server (provisioning.dns.listen)"}},
		{"same port on different addresses", sub(auth + "  dns: {listen: \"10.0.0.1:6000\"}\n  tftp: {listen: \"127.0.0.1:6000\"}\n"), nil},
		{"same port, service off", sub(auth + "  tftp: {listen: \":67\"}\nservices:\n  dhcp: {enabled: false}\n"), nil},
		{"no subnets, no provisioning services", "provisioning:\n  http_boot: {listen: \":443\"}\n", nil},
		{"nfs", "provisioning:\n  nfs:\n    threads: -1\n    roles:\n      contestant: {root_image: ../data, home: Lab}\n      empty: {}\n      pinned: {root_image: contest@0}\n",
			[]string{"provisioning.nfs.threads: -1 is out of range", "provisioning.nfs.roles.contestant.root_image: \"../data\" is not a root image (use NAME",
				"provisioning.nfs.roles.contestant.home: \"Lab\" is not a home name", "provisioning.nfs.roles.empty: names neither root_image nor home",
				"provisioning.nfs.roles.pinned.root_image: \"contest@0\""}},
		{"nfs roles", "provisioning:\n  nfs:\n    homes: [{name: contestants, size: 50G}]\n    roles:\n      contestant: {root_image: contest, home: contestants}\n      tester: {root_image: contest@3}\n", nil},
		{"nfs homes", "provisioning:\n  nfs:\n    homes: [{name: lab, size: 1M}, {name: lab, size: 20G}, {name: x, size: big}]\n    roles:\n      staff: {home: staff}\n",
			[]string{"provisioning.nfs.homes[0].size: \"1M\" is not a size from 16M to 16T", "provisioning.nfs.homes[1].name: \"lab\" is also provisioning.nfs.homes[0]",
				"provisioning.nfs.homes[2].size: \"big\"", "provisioning.nfs.roles.staff.home: no home \"staff\" in provisioning.nfs.homes"}},
		{"registration", "provisioning:\n  nfs:\n    homes: [{name: lab, size: 1G}]\n  diskless:\n    register: {enabled: true, policy: open, roles: [room-a, room-b], root_image: contest, home: lab, retry: 5s}\n", nil},
		{"registration defaults", "provisioning:\n  diskless:\n    register: {enabled: true}\n", nil},
		{"registration bad", "provisioning:\n  diskless:\n    register: {policy: anyone, retry: 100ms, boot_profile: kernel, roles: [room-a, room-a, unknown, \"a b\"], role: x, root_image: ../x, home: nope}\n",
			[]string{`provisioning.diskless.register.policy: unknown policy "anyone" (use open`, "provisioning.diskless.register.retry: 100ms is out of range",
				`provisioning.diskless.register.boot_profile: "kernel" cannot be given`, `provisioning.diskless.register.roles[1]: "room-a" is also provisioning.diskless.register.roles[0]`,
				`provisioning.diskless.register.roles[2]: "unknown" is the role of machines kiln does not know`, `provisioning.diskless.register.roles[3]: "a b" is not a role`,
				"provisioning.diskless.register.role: is set beside roles", `provisioning.diskless.register.root_image: "../x" is not a root image`,
				`provisioning.diskless.register.home: no home "nope" in provisioning.nfs.homes`}},
		{"off may overlap", "provisioning:\n  subnets:\n" +
			"    - {name: a, interface: eth1, cidr: 10.0.0.0/16, mode: proxy}\n" +
			"    - {name: b, cidr: 10.0.5.0/24, mode: off}\n", nil},
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

func TestServicePorts(t *testing.T) {
	c, err := Parse(strings.NewReader(goodProvisioning + "  dns: {listen: \"10.0.0.1:5353\"}\n  tftp: {listen: \":6969\"}\n  http_boot: {listen: \":8081\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Port{{"udp", 67, "DHCP server"}, {"udp", 4011, "proxyDHCP"}, {"udp", 5353, "DNS"}, {"tcp", 5353, "DNS"},
		{"udp", 6969, "TFTP"}, {"tcp", 8081, "HTTP boot"}}
	got := c.Provisioning.ServicePorts()
	if len(got) != len(want) {
		t.Fatalf("ServicePorts() = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ServicePorts()[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if p := c.Provisioning.HTTPBootPort(); p != 8081 {
		t.Errorf("HTTPBootPort() = %d, want 8081", p)
	}
}

func TestSubnetProbe(t *testing.T) {
	off := false
	if !(Subnet{}).Probe() || (Subnet{ConflictProbe: &off}).Probe() {
		t.Errorf("Probe() = %v by default and %v with conflict_probe: false, want true and false", (Subnet{}).Probe(), (Subnet{ConflictProbe: &off}).Probe())
	}
}
