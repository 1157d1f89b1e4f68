package dhcplease

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/rfc1035label"
	"github.com/vishvananda/netlink"
)

func TestFromACK(t *testing.T) {
	now := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	ack, err := dhcpv4.New(
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(10, 0, 2, 15)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(net.IPv4(10, 0, 2, 2)),
		dhcpv4.WithDNS(net.IPv4(10, 0, 2, 3)),
		dhcpv4.WithLeaseTime(86400),
		dhcpv4.WithServerIP(net.IPv4(10, 0, 2, 2)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 2, 2))),
		dhcpv4.WithOption(dhcpv4.OptDomainSearch(&rfc1035label.Labels{Labels: []string{"lab.example"}})),
	)
	if err != nil {
		t.Fatal(err)
	}
	got, err := FromACK("eth0", ack, now)
	if err != nil {
		t.Fatal(err)
	}
	want := &Lease{
		Interface: "eth0",
		Addr:      netip.MustParsePrefix("10.0.2.15/24"),
		Router:    netip.MustParseAddr("10.0.2.2"),
		DNS:       []netip.Addr{netip.MustParseAddr("10.0.2.3")},
		Search:    []string{"lab.example"},
		Server:    netip.MustParseAddr("10.0.2.2"),
		Obtained:  now,
		Duration:  24 * time.Hour, Renew: 12 * time.Hour, Rebind: 21 * time.Hour,
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
		t.Errorf("FromACK mismatch (-want +got):\n%s", diff)
	}

	// Without a netmask the class's default applies, a domain name stands
	// in for a search list, and a T1 past the lease is halved.
	bare, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(192, 168, 7, 9)), dhcpv4.WithLeaseTime(600),
		dhcpv4.WithOption(dhcpv4.OptDomainName("site.example")),
		dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(900*time.Second)))
	got, err = FromACK("eth1", bare, now)
	if err != nil {
		t.Fatal(err)
	}
	if got.Addr != netip.MustParsePrefix("192.168.7.9/24") || got.Router.IsValid() || !slices.Equal(got.Search, []string{"site.example"}) || got.Renew != 5*time.Minute {
		t.Errorf("FromACK(bare) = %+v, want 192.168.7.9/24, no router, search site.example, renew 5m", got)
	}

	empty, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck))
	if _, err := FromACK("eth0", empty, now); err == nil {
		t.Error("FromACK(no yiaddr) = nil error")
	}
}

// recorder is a Netlink that keeps what was asked of it.
type recorder struct {
	calls []string
	fail  error
}

func (r *recorder) AddrReplace(l netlink.Link, a *netlink.Addr) error {
	r.calls = append(r.calls, fmt.Sprintf("addr replace %s %s valid=%d preferred=%d", l.Attrs().Name, a.IPNet, a.ValidLft, a.PreferedLft))
	return r.fail
}

func (r *recorder) AddrDel(l netlink.Link, a *netlink.Addr) error {
	r.calls = append(r.calls, fmt.Sprintf("addr del %s %s", l.Attrs().Name, a.IPNet))
	return nil
}

func (r *recorder) RouteReplace(rt *netlink.Route) error {
	r.calls = append(r.calls, fmt.Sprintf("route replace dev %d via %s metric %d proto %d", rt.LinkIndex, rt.Gw, rt.Priority, rt.Protocol))
	return nil
}

func TestApply(t *testing.T) {
	link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", Index: 3}}
	l := &Lease{Addr: netip.MustParsePrefix("10.0.2.15/24"), Router: netip.MustParseAddr("10.0.2.2"), Duration: 10 * time.Minute}
	prev := &Lease{Addr: netip.MustParsePrefix("10.0.2.99/24")}
	tests := []struct {
		name      string
		l, prev   *Lease
		fail      error
		want      []string
		wantError bool
	}{
		{"first", l, nil, nil, []string{
			"addr replace eth0 10.0.2.15/24 valid=600 preferred=600",
			"route replace dev 3 via 10.0.2.2 metric 103 proto 16"}, false},
		{"same address renewed", l, l, nil, []string{
			"addr replace eth0 10.0.2.15/24 valid=600 preferred=600",
			"route replace dev 3 via 10.0.2.2 metric 103 proto 16"}, false},
		{"new address drops the old", l, prev, nil, []string{
			"addr del eth0 10.0.2.99/24",
			"addr replace eth0 10.0.2.15/24 valid=600 preferred=600",
			"route replace dev 3 via 10.0.2.2 metric 103 proto 16"}, false},
		{"permanent, no router", &Lease{Addr: netip.MustParsePrefix("10.0.2.15/24")}, nil, nil, []string{
			"addr replace eth0 10.0.2.15/24 valid=0 preferred=0"}, false},
		{"address refused: no route", l, nil, errors.New("EPERM"), []string{
			"addr replace eth0 10.0.2.15/24 valid=600 preferred=600"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{fail: tt.fail}
			err := Apply(r, link, tt.l, tt.prev, 103)
			if (err != nil) != tt.wantError {
				t.Errorf("Apply() error = %v, want error %v", err, tt.wantError)
			}
			if diff := cmp.Diff(tt.want, r.calls); diff != "" {
				t.Errorf("Apply() calls (-want +got):\n%s", diff)
			}
		})
	}
}
