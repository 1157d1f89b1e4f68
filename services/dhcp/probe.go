package dhcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"golang.org/x/sys/unix"
)

// arpProber finds out whether an address is in use on a local link by asking
// for it with ARP, the way RFC 5227 hosts do before using an address.
type arpProber struct {
	f       *os.File
	ifindex int
	hw      net.HardwareAddr
	src     netip.Addr // our address, the ARP sender
	timeout time.Duration

	// mu guards waiters.
	mu sync.Mutex
	// waiters get the MAC of whoever answers for an address.
	waiters map[netip.Addr][]chan net.HardwareAddr
}

// newARPProber opens an ARP socket on ifname. Call close when done.
func newARPProber(ifname string, src netip.Addr, timeout time.Duration) (*arpProber, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("ARP probe on %s: %w", ifname, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return nil, fmt.Errorf("ARP probe on %s: opening packet socket: %w", ifname, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ARP probe on %s: binding: %w", ifname, err)
	}
	p := &arpProber{f: os.NewFile(uintptr(fd), "arp-"+ifname), ifindex: ifi.Index, hw: ifi.HardwareAddr, src: src,
		timeout: timeout, waiters: map[netip.Addr][]chan net.HardwareAddr{}}
	go p.readLoop()
	return p, nil
}

func (p *arpProber) close() error { return p.f.Close() }

func (p *arpProber) readLoop() {
	buf := make([]byte, 1500)
	for {
		n, err := p.f.Read(buf)
		if err != nil {
			return // closed
		}
		if n < 28 || binary.BigEndian.Uint16(buf[0:2]) != 1 || binary.BigEndian.Uint16(buf[2:4]) != unix.ETH_P_IP ||
			buf[4] != 6 || buf[5] != 4 {
			continue
		}
		// Any ARP packet whose sender claims the address counts: replies, and
		// requests or announcements of a host using it.
		sender, _ := netip.AddrFromSlice(buf[14:18])
		hw := net.HardwareAddr(slices.Clone(buf[8:14]))
		if slices.Equal(hw, p.hw) {
			continue
		}
		p.mu.Lock()
		for _, ch := range p.waiters[sender] {
			select {
			case ch <- hw:
			default:
			}
		}
		p.mu.Unlock()
	}
}

// Probe sends two ARP requests for ip within the timeout and returns the MAC
// of the first machine answering, or nil.
func (p *arpProber) Probe(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	ch := make(chan net.HardwareAddr, 1)
	p.mu.Lock()
	p.waiters[ip] = append(p.waiters[ip], ch)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.waiters[ip] = slices.DeleteFunc(p.waiters[ip], func(c chan net.HardwareAddr) bool { return c == ch })
		if len(p.waiters[ip]) == 0 {
			delete(p.waiters, ip)
		}
		p.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	resend := time.NewTicker(p.timeout / 2)
	defer resend.Stop()
	if err := p.send(ip); err != nil {
		return nil, err
	}
	for {
		select {
		case hw := <-ch:
			return hw, nil
		case <-resend.C:
			if err := p.send(ip); err != nil {
				return nil, err
			}
		case <-ctx.Done():
			return nil, nil
		}
	}
}

func (p *arpProber) send(target netip.Addr) error {
	pkt := make([]byte, 28)
	binary.BigEndian.PutUint16(pkt[0:2], 1) // Ethernet
	binary.BigEndian.PutUint16(pkt[2:4], unix.ETH_P_IP)
	pkt[4], pkt[5] = 6, 4
	binary.BigEndian.PutUint16(pkt[6:8], 1) // request
	copy(pkt[8:14], p.hw)
	if p.src.Is4() {
		copy(pkt[14:18], p.src.AsSlice())
	}
	copy(pkt[24:28], target.AsSlice())
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: p.ifindex, Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	rc, err := p.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), pkt, 0, to)
		return !errors.Is(serr, unix.EAGAIN)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("sending ARP probe for %s: %w", target, serr)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ForeignServer is a DHCP server other than kiln that answered on a link.
type ForeignServer struct {
	ServerID netip.Addr // option 54
	Offered  netip.Addr // yiaddr of its offer
}

// probeForeign broadcasts a DISCOVER on ifname (from its own MAC) and returns
// the servers that offer something within wait. kiln's own listener must not
// be running on the link yet.
func probeForeign(ctx context.Context, ifname string, wait time.Duration) ([]ForeignServer, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	conn, err := nclient4.NewRawUDPConn(ifname, dhcpv4.ClientPort)
	if err != nil {
		return nil, fmt.Errorf("opening raw DHCP client socket: %w", err)
	}
	defer conn.Close()
	offers, err := discoverOffers(ctx, conn, ifi.HardwareAddr, wait)
	var out []ForeignServer
	for _, o := range offers {
		out = append(out, ForeignServer{ServerID: addrOf(o.ServerIdentifier()), Offered: addrOf(o.YourIPAddr)})
	}
	return out, err
}

// discoverOffers broadcasts a DISCOVER on conn (a raw client-side conn, see
// nclient4.NewRawUDPConn), repeats it every second like a client would, and
// collects every OFFER for it until wait passes.
func discoverOffers(ctx context.Context, conn net.PacketConn, hw net.HardwareAddr, wait time.Duration, mods ...dhcpv4.Modifier) ([]*dhcpv4.DHCPv4, error) {
	disc, err := dhcpv4.NewDiscovery(hw, append([]dhcpv4.Modifier{dhcpv4.WithBroadcast(true)}, mods...)...)
	if err != nil {
		return nil, err
	}
	send := func() error {
		if _, err := conn.WriteTo(disc.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}); err != nil {
			return fmt.Errorf("sending DISCOVER: %w", err)
		}
		return nil
	}
	deadline := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var offers []*dhcpv4.DHCPv4
	seen := map[string]bool{}
	buf := make([]byte, 4096)
	for next := time.Now(); ; {
		now := time.Now()
		if !now.Before(deadline) {
			return offers, nil
		}
		if !now.Before(next) {
			if err := send(); err != nil {
				return offers, err
			}
			next = now.Add(time.Second)
		}
		rd := next
		if deadline.Before(rd) {
			rd = deadline
		}
		if err := conn.SetReadDeadline(rd); err != nil {
			return offers, err
		}
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return offers, err
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply || m.TransactionID != disc.TransactionID ||
			m.MessageType() != dhcpv4.MessageTypeOffer {
			continue
		}
		// One offer per server: retransmitted DISCOVERs get repeated offers.
		if key := m.ServerIdentifier().String(); !seen[key] {
			seen[key] = true
			offers = append(offers, m)
		}
	}
}

// icmpProber pings an address: the conflict probe for relayed subnets, which
// are not on a local link kiln could ARP on. A reply has no MAC, so Probe
// returns an empty (non-nil) address for "in use".
type icmpProber struct {
	f       *os.File
	id      uint16
	timeout time.Duration

	// mu guards seq and waiters.
	mu      sync.Mutex
	seq     uint16
	waiters map[netip.Addr][]chan struct{}
}

func newICMPProber(timeout time.Duration) (*icmpProber, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		return nil, fmt.Errorf("ICMP probe: opening raw socket: %w", err)
	}
	p := &icmpProber{f: os.NewFile(uintptr(fd), "icmp"), id: uint16(os.Getpid()), timeout: timeout,
		waiters: map[netip.Addr][]chan struct{}{}}
	go p.readLoop()
	return p, nil
}

func (p *icmpProber) close() error { return p.f.Close() }

func (p *icmpProber) readLoop() {
	buf := make([]byte, 1500)
	for {
		n, err := p.f.Read(buf)
		if err != nil {
			return
		}
		if n < 20 {
			continue
		}
		ihl := int(buf[0]&0x0f) * 4
		if n < ihl+8 || buf[ihl] != 0 /* echo reply */ || binary.BigEndian.Uint16(buf[ihl+4:]) != p.id {
			continue
		}
		src := netip.AddrFrom4([4]byte(buf[12:16]))
		p.mu.Lock()
		for _, ch := range p.waiters[src] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		p.mu.Unlock()
	}
}

// Probe pings ip twice within the timeout.
func (p *icmpProber) Probe(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	ch := make(chan struct{}, 1)
	p.mu.Lock()
	p.waiters[ip] = append(p.waiters[ip], ch)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.waiters[ip] = slices.DeleteFunc(p.waiters[ip], func(c chan struct{}) bool { return c == ch })
		if len(p.waiters[ip]) == 0 {
			delete(p.waiters, ip)
		}
		p.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	resend := time.NewTicker(p.timeout / 2)
	defer resend.Stop()
	if err := p.send(ip); err != nil {
		return nil, err
	}
	for {
		select {
		case <-ch:
			return net.HardwareAddr{}, nil
		case <-resend.C:
			if err := p.send(ip); err != nil {
				return nil, err
			}
		case <-ctx.Done():
			return nil, nil
		}
	}
}

func (p *icmpProber) send(ip netip.Addr) error {
	p.mu.Lock()
	p.seq++
	seq := p.seq
	p.mu.Unlock()
	pkt := make([]byte, 16)
	pkt[0] = 8 // echo request
	binary.BigEndian.PutUint16(pkt[4:], p.id)
	binary.BigEndian.PutUint16(pkt[6:], seq)
	copy(pkt[8:], "kilnprob")
	binary.BigEndian.PutUint16(pkt[2:], checksum(pkt))
	rc, err := p.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), pkt, 0, &unix.SockaddrInet4{Addr: ip.As4()})
		return !errors.Is(serr, unix.EAGAIN)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("pinging %s: %w", ip, serr)
	}
	return nil
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
