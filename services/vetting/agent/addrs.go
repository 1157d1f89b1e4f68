package agent

import (
	"net"
	"net/netip"
	"slices"
)

// InterfaceAddrs returns the IPv4 addresses with prefix ("10.9.0.50/24") of
// every interface that is up, except loopback and link-local ones, sorted:
// what Hello.Addrs reports so the orchestrator knows where the host is.
func InterfaceAddrs() []string {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []string
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		out = append(out, usableIPv4(addrs)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// usableIPv4 keeps global and private IPv4 prefixes.
func usableIPv4(addrs []net.Addr) []string {
	var out []string
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if !ip.Is4() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsMulticast() {
			continue
		}
		ones, _ := n.Mask.Size()
		out = append(out, netip.PrefixFrom(ip, ones).String())
	}
	return out
}
