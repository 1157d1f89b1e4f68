package agent

import (
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestUsableIPv4(t *testing.T) {
	cidr := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	in := []net.Addr{cidr("10.9.0.50/24"), cidr("127.0.0.1/8"), cidr("169.254.3.4/16"), cidr("fe80::1/64"),
		cidr("2001:db8::5/64"), cidr("192.168.1.7/32"), &net.IPAddr{IP: net.IPv4(10, 0, 0, 1)}}
	got := usableIPv4(in)
	want := []string{"10.9.0.50/24", "192.168.1.7/32"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("usableIPv4 (-want +got):\n%s", diff)
	}
}
