package console

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"kiln.dev/kiln/services/config"
)

func TestManagementURLs(t *testing.T) {
	ifs := []Interface{
		{Name: "lo", Up: true, Loopback: true, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}},
		{Name: "eth0", Up: true, Carrier: true, Addrs: []netip.Prefix{
			netip.MustParsePrefix("10.0.2.15/24"),
			netip.MustParsePrefix("fe80::1/64"),
			netip.MustParsePrefix("fd00::15/64"),
		}},
		{Name: "eth1", Up: false, Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.9.1/24")}},
	}
	tests := []struct {
		name string
		m    config.Management
		want []string
	}{
		{"https default port", config.Management{HTTPSPort: 443, HTTPPort: 80}, []string{"https://10.0.2.15/", "https://[fd00::15]/"}},
		{"https other port", config.Management{HTTPSPort: 8443}, []string{"https://10.0.2.15:8443/", "https://[fd00::15]:8443/"}},
		{"http only", config.Management{HTTPPort: 8080}, []string{"http://10.0.2.15:8080/", "http://[fd00::15]:8080/"}},
		{"listen address", config.Management{HTTPSPort: 443, Listen: "192.0.2.7"}, []string{"https://192.0.2.7/"}},
		{"listen name", config.Management{HTTPSPort: 443, Listen: "kiln.lab"}, []string{"https://kiln.lab/"}},
		{"listen unspecified", config.Management{HTTPSPort: 443, Listen: "::"}, []string{"https://10.0.2.15/", "https://[fd00::15]/"}},
		{"disabled", config.Management{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := managementURLs(tt.m, ifs)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("managementURLs(%+v) = %q, want %q (-want +got):\n%s", tt.m, got, tt.want, diff)
			}
		})
	}
}

func TestBannerManagementLine(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Console)
		want   string
	}{
		{"several URLs", func(c *Console) {
			c.Net = fakeNet{ifs: []Interface{{Name: "eth0", Up: true, Carrier: true, Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/24"), netip.MustParsePrefix("10.0.1.2/24")}}}}
		}, "management  https://10.0.0.2/\n            https://10.0.1.2/\n"},
		{"no address", func(c *Console) { c.Net = fakeNet{} }, "management  no address yet (menu item 2 shows the interfaces)\n"},
		{"interfaces unreadable", func(c *Console) { c.Net = fakeNet{err: errTest} }, "management  unknown (test failure)\n"},
		{"disabled", func(c *Console) { c.Management = config.Management{} }, "management  disabled in the config (management.https_port, management.http_port)\n"},
		{"no hostname or version", func(c *Console) { c.Hostname, c.Version, c.Slot = "", "", "" }, "\nkiln  kiln -  slot -\n"},
		{"live", func(c *Console) { c.Hostname, c.Version, c.Slot, c.Live = "k", "v1", "", true }, "\nk  kiln v1  LIVE from the ISO (nothing is kept at power-off)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakes().console(t)
			tt.change(c)
			if got := run(t, c, ""); !strings.Contains(got, tt.want) {
				t.Errorf("banner lacks %q; got:\n%s", tt.want, got)
			}
		})
	}
}

// fakeLogin is a LoginInfo with fixed answers.
type fakeLogin struct {
	pw, fp string
	err    error
}

func (f fakeLogin) AdminPassword() (string, error) { return f.pw, f.err }
func (f fakeLogin) Fingerprint() (string, error)   { return f.fp, f.err }

func TestBannerLoginLines(t *testing.T) {
	tests := []struct {
		name    string
		login   LoginInfo
		want    []string
		notWant string
	}{
		{"first boot", fakeLogin{pw: "abcd-efgh-jkmn-pqrs", fp: "AB:CD"}, []string{"certificate SHA-256 AB:CD\n", "admin login user admin, password abcd-efgh-jkmn-pqrs ("}, ""},
		{"password changed", fakeLogin{fp: "AB:CD"}, []string{"certificate SHA-256 AB:CD\n"}, "admin login"},
		{"unreadable", fakeLogin{err: errTest}, []string{"certificate unknown (test failure)\n", "admin login unknown (test failure)\n"}, ""},
		{"not wired", nil, nil, "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakes().console(t)
			c.Login = tt.login
			got := run(t, c, "")
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("banner lacks %q; got:\n%s", w, got)
				}
			}
			if tt.notWant != "" && strings.Contains(got, tt.notWant) {
				t.Errorf("banner has %q; got:\n%s", tt.notWant, got)
			}
		})
	}
}
