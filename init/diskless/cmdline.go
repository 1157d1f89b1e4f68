package diskless

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"kiln.dev/kiln/internal/cmdline"
)

// Kernel command line parameters (docs/diskless.md states the contract).
const (
	ParamRoot    = "kiln.nfsroot"
	ParamHome    = "kiln.nfshome"
	ParamOverlay = "kiln.overlay"
	ParamMAC     = "kiln.mac"
	ParamHost    = "kiln.host"
)

// Export is an NFS export, "server:/path"; Server is an IP address or a
// host name (resolved with the DHCP lease's DNS servers).
type Export struct {
	Server string
	Path   string
}

func (e Export) String() string { return e.Server + ":" + e.Path }

// Cmdline is what the diskless initramfs needs from the kernel command line.
type Cmdline struct {
	// Root is the root image, mounted read-only.
	Root Export
	// Home, when set, is mounted read-write on /home.
	Home Export
	// OverlaySize is the size of the tmpfs that holds the root's writable
	// layer: "" for the kernel's default (half of RAM), or a tmpfs size=
	// value (512M, 2G, 25%).
	OverlaySize string
	// MAC is the boot NIC (kiln.mac); nil: the first NIC that gets a lease.
	MAC net.HardwareAddr
	// Hostname (kiln.host) is set as the kernel's host name when present.
	Hostname string
	// Init is the program run in the new root (init=…); default /sbin/init.
	Init string
}

// ParseCmdline parses /proc/cmdline. Errors name the parameter and the fix.
func ParseCmdline(s string) (Cmdline, error) {
	p := cmdline.Parse(s).Map()
	c := Cmdline{Init: "/sbin/init", Hostname: p[ParamHost]}
	root, ok := p[ParamRoot]
	if !ok || root == "" {
		return c, fmt.Errorf("kernel command line has no %s=<server>:/roots/<name>/<version> (the diskless boot script sets it; check the host's boot profile and root image)", ParamRoot)
	}
	var err error
	if c.Root, err = parseExport(ParamRoot, root); err != nil {
		return c, err
	}
	if home := p[ParamHome]; home != "" {
		if c.Home, err = parseExport(ParamHome, home); err != nil {
			return c, err
		}
	}
	switch ov := p[ParamOverlay]; ov {
	case "", "tmpfs":
	default:
		size, _ := strings.CutPrefix(ov, "tmpfs:")
		if !validSize(size) {
			return c, fmt.Errorf("kernel command line %s=%s: want tmpfs or a tmpfs size such as 512M, 2G or 25%%", ParamOverlay, ov)
		}
		c.OverlaySize = size
	}
	if ip, ok := p["ip"]; ok && ip != "dhcp" {
		return c, fmt.Errorf("kernel command line ip=%s: the diskless initramfs configures the network only by DHCP (use ip=dhcp or leave ip= out)", ip)
	}
	if m := p[ParamMAC]; m != "" {
		if c.MAC, err = net.ParseMAC(m); err != nil || len(c.MAC) != 6 {
			return c, fmt.Errorf("kernel command line %s=%s is not an Ethernet MAC address such as 52:54:00:12:34:56", ParamMAC, m)
		}
	}
	if v := p["init"]; v != "" {
		if !strings.HasPrefix(v, "/") {
			return c, fmt.Errorf("kernel command line init=%s: want an absolute path inside the root image", v)
		}
		c.Init = v
	}
	return c, nil
}

// parseExport parses "server:/path". The path must be absolute and clean:
// it goes into the mount's source as is.
func parseExport(param, v string) (Export, error) {
	server, path, ok := strings.Cut(v, ":/")
	if !ok || server == "" {
		return Export{}, fmt.Errorf("kernel command line %s=%s is not <server>:/<path>", param, v)
	}
	path = "/" + path
	if strings.HasPrefix(server, "[") || strings.Count(server, ":") > 0 {
		return Export{}, fmt.Errorf("kernel command line %s=%s: the server must be an IPv4 address or a host name (NFS over IPv6 is not supported by the diskless initramfs)", param, v)
	}
	if a, err := netip.ParseAddr(server); err == nil && !a.Is4() {
		return Export{}, fmt.Errorf("kernel command line %s=%s: the server must be an IPv4 address or a host name", param, v)
	}
	for _, c := range strings.Split(path[1:], "/") {
		if c == "" || c == "." || c == ".." {
			return Export{}, fmt.Errorf("kernel command line %s=%s: the export path must be clean (no empty, . or .. components)", param, v)
		}
	}
	if strings.ContainsAny(path, ",") || strings.ContainsAny(server, ",/") {
		return Export{}, fmt.Errorf("kernel command line %s=%s: commas are not allowed (they would be read as mount options)", param, v)
	}
	return Export{Server: server, Path: path}, nil
}

// validSize accepts what tmpfs's size= takes: a number with an optional
// k, m, g (either case) or a percentage of RAM from 1 to 100.
func validSize(s string) bool {
	if s == "" {
		return false
	}
	num := s
	pct := false
	switch s[len(s)-1] {
	case 'k', 'K', 'm', 'M', 'g', 'G':
		num = s[:len(s)-1]
	case '%':
		num, pct = s[:len(s)-1], true
	}
	if num == "" || len(num) > 12 {
		return false
	}
	n := 0
	for _, r := range num {
		if r < '0' || r > '9' {
			return false
		}
		n = n*10 + int(r-'0')
	}
	if n == 0 {
		return false
	}
	return !pct || n <= 100
}
