package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// NTP configures kiln's time service: the upstream servers kiln keeps its
// own clock from, and the NTP server it runs for the provisioning subnets.
type NTP struct {
	// Servers are the upstream NTP servers ("192.0.2.123", "ntp.example",
	// "ntp.example:123"). Empty: kiln does not touch its clock and serves it
	// as unsynchronized (leap indicator 3, stratum 16), so clients do not
	// trust it.
	Servers []string `yaml:"servers"`
	// Listen is the UDP address of the NTP server; empty means
	// DefaultNTPListen. Clients only ask port 123.
	Listen string `yaml:"listen"`
}

// NTPByDefault reports whether the ntp service runs unless
// services.ntp.enabled says otherwise: when there are subnets to serve time
// to, or upstream servers to keep kiln's clock from.
func (c Config) NTPByDefault() bool {
	return len(c.Provisioning.Subnets) > 0 || len(c.NTP.Servers) > 0
}

// DefaultNTPListen is the NTP server's address unless ntp.listen says otherwise.
const DefaultNTPListen = ":123"

// ListenAddr returns ntp.listen with the default applied.
func (n NTP) ListenAddr() string { return or(n.Listen, DefaultNTPListen) }

// ServerAddrs returns the upstream servers as host:port (port 123 when omitted).
func (n NTP) ServerAddrs() []string {
	var out []string
	for _, s := range n.Servers {
		if host, port, ok := splitServer(s); ok {
			out = append(out, net.JoinHostPort(host, strconv.Itoa(port)))
		}
	}
	return out
}

// splitServer parses "host", "host:port", "IPv6" or "[IPv6]:port".
func splitServer(s string) (host string, port int, ok bool) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.String(), 123, true
	}
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		host, ps = s, "123"
	}
	port, err = strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.String(), port, a.Zone() == ""
	}
	if strings.Contains(host, ":") || !validDomain(host) {
		return "", 0, false
	}
	return host, port, true
}

func (n NTP) validate(add func(field, problem, fix string)) {
	seen := map[string]int{}
	for i, s := range n.Servers {
		f := fmt.Sprintf("ntp.servers[%d]", i)
		host, port, ok := splitServer(s)
		if !ok {
			add(f, fmt.Sprintf("%q is not a server address", s), "use a host name or IP address, optionally with :port, e.g. ntp.example, 192.0.2.123 or [2001:db8::123]:123")
			continue
		}
		key := net.JoinHostPort(host, strconv.Itoa(port))
		if j, dup := seen[key]; dup {
			add(f, fmt.Sprintf("%q is also ntp.servers[%d]", s, j), "list each server once")
		}
		seen[key] = i
	}
	if n.Listen != "" {
		if _, _, err := splitListen(n.Listen); err != nil {
			add("ntp.listen", fmt.Sprintf("%q: %v", n.Listen, err), "use address:port or :port with an IP address, e.g. :123 or 10.0.0.1:123")
		}
	}
}
