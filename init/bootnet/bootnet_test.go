package bootnet

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestResolvConf(t *testing.T) {
	got := ResolvConf(map[string]Lease{
		"eth1": {DNS: []netip.Addr{netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("10.0.2.3")}, Search: []string{"b.example"}},
		"eth0": {DNS: []netip.Addr{netip.MustParseAddr("10.0.2.3"), netip.MustParseAddr("1.1.1.1")}, Search: []string{"a.example"}},
		"eth2": {DNS: []netip.Addr{netip.MustParseAddr("9.9.9.9")}},
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
