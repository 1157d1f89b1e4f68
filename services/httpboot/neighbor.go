package httpboot

import (
	"bufio"
	"bytes"
	"net"
	"net/netip"
	"os"
	"strconv"
)

// atfComplete is the ATF_COM flag of /proc/net/arp: the entry is resolved.
const atfComplete = 0x2

// ProcNeighbor returns a neighbour lookup over the kernel's IPv4 ARP table
// in the /proc/net/arp format at path: the MAC of a resolved entry for ip,
// or "". The table is small (one line per on-link peer) and read per call.
func ProcNeighbor(path string) func(netip.Addr) string {
	return func(ip netip.Addr) string {
		b, err := os.ReadFile(path)
		if err != nil || !ip.Is4() {
			return ""
		}
		return neighborIn(b, ip)
	}
}

// neighborIn finds ip in an ARP table: "IP address  HW type  Flags  HW
// address  Mask  Device" after a header line.
func neighborIn(table []byte, ip netip.Addr) string {
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // header
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 4 {
			continue
		}
		a, err := netip.ParseAddr(string(f[0]))
		if err != nil || a != ip {
			continue
		}
		flags, err := strconv.ParseUint(string(f[2]), 0, 32)
		if err != nil || flags&atfComplete == 0 {
			return ""
		}
		hw, err := net.ParseMAC(string(f[3]))
		if err != nil || len(hw) != 6 {
			return ""
		}
		return hw.String()
	}
	return ""
}
