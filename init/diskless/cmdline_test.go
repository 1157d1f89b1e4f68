package diskless

import (
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCmdline(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	root := Export{Server: "10.0.0.1", Path: "/roots/contest/2"}
	tests := []struct {
		in      string
		want    Cmdline
		wantErr string
	}{
		{
			in:   "initrd=initrd kiln.nfsroot=10.0.0.1:/roots/contest/2 ip=dhcp console=ttyS0,115200\n",
			want: Cmdline{Root: root, Init: "/sbin/init"},
		},
		{
			in: "kiln.nfsroot=10.0.0.1:/roots/contest/2 kiln.nfshome=files.lan:/homes/lab kiln.overlay=512M " +
				"kiln.mac=52-54-00-12-34-56 kiln.host=pc-01 init=/lib/systemd/systemd",
			want: Cmdline{Root: root, Home: Export{Server: "files.lan", Path: "/homes/lab"}, OverlaySize: "512M",
				MAC: mac, Hostname: "pc-01", Init: "/lib/systemd/systemd"},
		},
		{in: "kiln.nfsroot=10.0.0.1:/r kiln.overlay=tmpfs", want: Cmdline{Root: Export{"10.0.0.1", "/r"}, Init: "/sbin/init"}},
		{in: "kiln.nfsroot=10.0.0.1:/r kiln.overlay=tmpfs:25%", want: Cmdline{Root: Export{"10.0.0.1", "/r"}, OverlaySize: "25%", Init: "/sbin/init"}},
		{in: "ip=dhcp quiet", wantErr: "no kiln.nfsroot="},
		{in: "kiln.nfsroot=", wantErr: "no kiln.nfsroot="},
		{in: "kiln.nfsroot=10.0.0.1/roots/x", wantErr: "kiln.nfsroot=10.0.0.1/roots/x is not <server>:/<path>"},
		{in: "kiln.nfsroot=:/roots/x", wantErr: "is not <server>:/<path>"},
		{in: "kiln.nfsroot=10.0.0.1:/roots/../x", wantErr: "must be clean"},
		{in: "kiln.nfsroot=10.0.0.1:/roots//x", wantErr: "must be clean"},
		{in: "kiln.nfsroot=10.0.0.1:/roots/x/", wantErr: "must be clean"},
		{in: "kiln.nfsroot=10.0.0.1:/roots/x,vers=3", wantErr: "commas are not allowed"},
		{in: "kiln.nfsroot=[fd00::1]:/roots/x", wantErr: "IPv4 address or a host name"},
		{in: "kiln.nfsroot=10.0.0.1:/r kiln.nfshome=/homes/lab", wantErr: "kiln.nfshome=/homes/lab is not <server>:/<path>"},
		{in: "kiln.nfsroot=10.0.0.1:/r kiln.overlay=lots", wantErr: "kiln.overlay=lots: want tmpfs or a tmpfs size"},
		{in: "kiln.nfsroot=10.0.0.1:/r kiln.overlay=0M", wantErr: "kiln.overlay=0M"},
		{in: "kiln.nfsroot=10.0.0.1:/r kiln.overlay=150%", wantErr: "kiln.overlay=150%"},
		{in: "kiln.nfsroot=10.0.0.1:/r ip=10.0.0.5::10.0.0.1:255.255.255.0", wantErr: "only by DHCP"},
		{in: "kiln.nfsroot=10.0.0.1:/r kiln.mac=52:54:00", wantErr: "kiln.mac=52:54:00 is not an Ethernet MAC"},
		{in: "kiln.nfsroot=10.0.0.1:/r init=sbin/init", wantErr: "init=sbin/init: want an absolute path"},
	}
	for _, tt := range tests {
		got, err := ParseCmdline(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseCmdline(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCmdline(%q) error = %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseCmdline(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("kiln.nfsroot=10.0.0.1:/roots/contest/2 kiln.nfshome=h:/homes/lab kiln.overlay=1G")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCmdline(s)
		if err != nil {
			return
		}
		// Whatever parses must be usable as a mount source.
		for _, e := range []Export{c.Root, c.Home} {
			if strings.ContainsAny(e.Path, ", \t\n") || strings.Contains(e.Path, "..") {
				t.Errorf("ParseCmdline(%q) accepted export %q", s, e)
			}
		}
	})
}
