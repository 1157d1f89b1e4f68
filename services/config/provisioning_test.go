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
		{"HTTPBase", a.HTTPBase(self), "http://10.0.0.1:8080"},
		{"HTTPBase default", office.HTTPBase(netip.MustParseAddr("192.168.1.5")), "http://192.168.1.5:8080"},
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
