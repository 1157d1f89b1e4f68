package tftp

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
)

// Refusal reasons sent to clients in ERROR packets.
var (
	ErrAccess   = errors.New("access violation")
	ErrNotFound = errors.New("file not found")
	ErrBusy     = errors.New("server busy, try again")
)

// maxNameLen bounds a requested file name.
const maxNameLen = 255

// CleanPath turns a requested file name into a path relative to the root, or
// returns ErrAccess. A leading "/" means the root, "\" is a separator, and
// "." and empty components are dropped; "..", NUL and control bytes are
// refused rather than cleaned, so a request that tries to climb out is
// visible as a refusal.
func CleanPath(name string) (string, error) {
	if name == "" || len(name) > maxNameLen {
		return "", ErrAccess
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f {
			return "", ErrAccess
		}
	}
	name = strings.ReplaceAll(name, `\`, "/")
	var parts []string
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
			continue
		case "..":
			return "", ErrAccess
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "", ErrAccess
	}
	return strings.Join(parts, "/"), nil
}

// BlockSizeCap returns the largest blksize that fits one datagram on the
// links a listener on listen serves: MTU - 32 of the interface holding the
// listen address, or for a wildcard address the smallest MTU of the up,
// non-loopback interfaces (loopback's when it is the only one), clamped to
// [512, 65464] and to max when max > 0.
func BlockSizeCap(listen netip.Addr, ifaces []Iface, max int) int {
	mtu := 0
	specific := listen.IsValid() && !listen.IsUnspecified()
	loopMTU := 0
	for _, ifc := range ifaces {
		if !ifc.Up {
			continue
		}
		if specific {
			for _, a := range ifc.Addrs {
				if a == listen.Unmap() {
					mtu = ifc.MTU
				}
			}
			continue
		}
		if ifc.Loopback {
			loopMTU = ifc.MTU
			continue
		}
		if ifc.MTU > 0 && (mtu == 0 || ifc.MTU < mtu) {
			mtu = ifc.MTU
		}
	}
	if mtu == 0 {
		mtu = loopMTU
	}
	c := 65464
	if mtu > 0 {
		c = mtu - 32
	}
	if max > 0 && c > max {
		c = max
	}
	if c > 65464 {
		c = 65464
	}
	if c < 512 {
		c = 512
	}
	return c
}

// Iface is the part of a network interface BlockSizeCap looks at.
type Iface struct {
	MTU      int
	Up       bool
	Loopback bool
	Addrs    []netip.Addr
}

// systemIfaces lists the host's interfaces.
func systemIfaces() ([]Iface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]Iface, 0, len(ifs))
	for _, i := range ifs {
		f := Iface{MTU: i.MTU, Up: i.Flags&net.FlagUp != 0, Loopback: i.Flags&net.FlagLoopback != 0}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					f.Addrs = append(f.Addrs, ip.Unmap())
				}
			}
		}
		out = append(out, f)
	}
	return out, nil
}

// limiter caps concurrent transfers, globally and per client address.
type limiter struct {
	maxAll, maxPer int

	// mu guards all and per.
	mu  sync.Mutex
	all int
	per map[netip.Addr]int
}

func newLimiter(maxAll, maxPer int) *limiter {
	return &limiter{maxAll: maxAll, maxPer: maxPer, per: map[netip.Addr]int{}}
}

// acquire takes a transfer slot for client; false when a limit is reached.
func (l *limiter) acquire(client netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.all >= l.maxAll || l.per[client] >= l.maxPer {
		return false
	}
	l.all++
	l.per[client]++
	return true
}

func (l *limiter) release(client netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all--
	if l.per[client]--; l.per[client] <= 0 {
		delete(l.per, client)
	}
}
