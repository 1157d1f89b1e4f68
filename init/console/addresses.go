package console

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"kiln.dev/kiln/services/config"
)

// InterfaceLister lists the network interfaces and their addresses.
// NetInterfaces is the real one.
type InterfaceLister interface {
	Interfaces() ([]Interface, error)
}

// Interface is one network interface.
type Interface struct {
	Name     string
	MAC      string // "" when the interface has none (lo)
	Up       bool   // administratively up
	Carrier  bool   // the link is operational (IFF_RUNNING)
	Loopback bool
	Addrs    []netip.Prefix
}

// State is "down", "up" or "up, no carrier".
func (i Interface) State() string {
	switch {
	case !i.Up:
		return "down"
	case !i.Carrier && !i.Loopback:
		return "up, no carrier"
	}
	return "up"
}

// NetInterfaces lists interfaces with the standard library (net.Interfaces).
type NetInterfaces struct{}

// Interfaces implements InterfaceLister.
func (NetInterfaces) Interfaces() ([]Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	out := make([]Interface, 0, len(ifs))
	for _, ni := range ifs {
		i := Interface{
			Name:     ni.Name,
			MAC:      ni.HardwareAddr.String(),
			Up:       ni.Flags&net.FlagUp != 0,
			Carrier:  ni.Flags&net.FlagRunning != 0,
			Loopback: ni.Flags&net.FlagLoopback != 0,
		}
		addrs, err := ni.Addrs()
		if err != nil {
			return nil, fmt.Errorf("listing addresses of %s: %w", ni.Name, err)
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ones, _ := ipn.Mask.Size()
			i.Addrs = append(i.Addrs, netip.PrefixFrom(ip.Unmap(), ones))
		}
		out = append(out, i)
	}
	return out, nil
}

// addresses is menu item 2.
func (s *session) addresses(context.Context) error {
	if s.c.Net == nil {
		return fmt.Errorf("addresses: %w", errNotAvailable)
	}
	ifs, err := s.c.Net.Interfaces()
	if err != nil {
		return err
	}
	for _, i := range ifs {
		s.printf("%s  %s  %s\n", i.Name, orDash(i.MAC), i.State())
		if len(i.Addrs) == 0 {
			s.printf("    no addresses\n")
		}
		for _, p := range i.Addrs {
			family := "inet "
			if p.Addr().Is6() {
				family = "inet6"
			}
			s.printf("    %s %s\n", family, p)
		}
	}
	return nil
}

// managementURLs returns the URLs the management service answers on: the
// configured listen address, or every global address of an interface that is up.
func managementURLs(m config.Management, ifs []Interface) []string {
	scheme, port, defPort := "https", m.HTTPSPort, 443
	if port <= 0 {
		scheme, port, defPort = "http", m.HTTPPort, 80
	}
	if port <= 0 {
		return nil
	}
	hostport := func(host string) string {
		if port == defPort {
			if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
				return "[" + host + "]"
			}
			return host
		}
		return net.JoinHostPort(host, strconv.Itoa(port))
	}
	var hosts []string
	if a, err := netip.ParseAddr(m.Listen); m.Listen != "" && (err != nil || !a.IsUnspecified()) {
		hosts = append(hosts, m.Listen)
	} else {
		for _, i := range ifs {
			if !i.Up || i.Loopback {
				continue
			}
			for _, p := range i.Addrs {
				if a := p.Addr(); a.IsGlobalUnicast() {
					hosts = append(hosts, a.String())
				}
			}
		}
	}
	urls := make([]string, 0, len(hosts))
	for _, h := range hosts {
		urls = append(urls, scheme+"://"+hostport(h)+"/")
	}
	return urls
}
