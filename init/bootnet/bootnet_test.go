package bootnet

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

func TestFromACK(t *testing.T) {
	ack, err := dhcpv4.New(
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(10, 0, 2, 15)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(net.IPv4(10, 0, 2, 2)),
		dhcpv4.WithDNS(net.IPv4(10, 0, 2, 3)),
		dhcpv4.WithLeaseTime(86400),
		dhcpv4.WithOption(dhcpv4.OptDomainSearch(&rfc1035label.Labels{Labels: []string{"lab.example"}})),
	)
	if err != nil {
		t.Fatal(err)
	}
	got, err := FromACK(ack)
	if err != nil {
		t.Fatal(err)
	}
	want := Lease{
		Addr:     net.IPNet{IP: net.IPv4(10, 0, 2, 15).To4(), Mask: net.CIDRMask(24, 32)},
		Router:   net.IPv4(10, 0, 2, 2).To4(),
		DNS:      []net.IP{net.IPv4(10, 0, 2, 3).To4()},
		Search:   []string{"lab.example"},
		Duration: 24 * time.Hour, Renew: 12 * time.Hour, Rebind: 21 * time.Hour,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FromACK mismatch (-want +got):\n%s", diff)
	}
	empty, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck))
	if _, err := FromACK(empty); err == nil {
		t.Error("FromACK(no yiaddr) = nil error")
	}
}

func TestResolvConf(t *testing.T) {
	got := ResolvConf(map[string]Lease{
		"eth1": {DNS: []net.IP{net.IPv4(192, 168, 1, 1), net.IPv4(10, 0, 2, 3)}, Search: []string{"b.example"}},
		"eth0": {DNS: []net.IP{net.IPv4(10, 0, 2, 3), net.IPv4(1, 1, 1, 1)}, Search: []string{"a.example"}},
		"eth2": {DNS: []net.IP{net.IPv4(9, 9, 9, 9)}},
	})
	want := "# written by kiln init from DHCP leases\nsearch a.example b.example\nnameserver 10.0.2.3\nnameserver 1.1.1.1\nnameserver 192.168.1.1\n"
	if got != want {
		t.Errorf("ResolvConf = %q, want %q", got, want)
	}
}

func TestEthernetNICs(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, typ string, device, wireless bool) {
		p := filepath.Join(dir, name)
		os.MkdirAll(p, 0o755)
		os.WriteFile(filepath.Join(p, "type"), []byte(typ+"\n"), 0o644)
		if device {
			os.MkdirAll(filepath.Join(p, "device"), 0o755)
		}
		if wireless {
			os.MkdirAll(filepath.Join(p, "wireless"), 0o755)
		}
	}
	mk("lo", "772", false, false)
	mk("enp0s3", "1", true, false)
	mk("eth0", "1", true, false)
	mk("br0", "1", false, false)
	mk("wlan0", "1", true, true)
	mk("veth1", "1", false, false)
	if diff := cmp.Diff([]string{"enp0s3", "eth0"}, EthernetNICs(dir)); diff != "" {
		t.Errorf("EthernetNICs mismatch (-want +got):\n%s", diff)
	}
}
