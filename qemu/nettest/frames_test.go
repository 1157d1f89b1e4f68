package nettest

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"time"
)

// segment is the test's end of a dgram L2 segment: QEMU sends the VM's
// frames to conn and receives ours at vm. It answers ARP for its own
// address; other frames go to frames.
type segment struct {
	conn   *net.UDPConn
	vm     *net.UDPAddr
	mac    net.HardwareAddr
	ip     netip.Addr
	frames chan []byte
}

func newSegment(listenPort, vmPort int, mac net.HardwareAddr, ip netip.Addr) (*segment, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: listenPort})
	if err != nil {
		return nil, err
	}
	s := &segment{conn: c, vm: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: vmPort}, mac: mac, ip: ip, frames: make(chan []byte, 256)}
	go s.read()
	return s, nil
}

func (s *segment) Close() { s.conn.Close() }

func (s *segment) read() {
	buf := make([]byte, 2048)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			close(s.frames)
			return
		}
		f := append([]byte(nil), buf[:n]...)
		if len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == typeARP && binary.BigEndian.Uint16(f[20:]) == 1 &&
			netip.AddrFrom4([4]byte(f[38:42])) == s.ip {
			// Who has our address? Tell the VM.
			s.send(typeARP, arp(2, s.mac, s.ip, net.HardwareAddr(f[22:28]), netip.AddrFrom4([4]byte(f[28:32]))), net.HardwareAddr(f[6:12]))
			continue
		}
		select {
		case s.frames <- f:
		default: // nobody is waiting: drop
		}
	}
}

// EtherTypes.
const (
	typeIPv4 = 0x0800
	typeARP  = 0x0806
)

func (s *segment) send(typ uint16, payload []byte, dst net.HardwareAddr) error {
	_, err := s.conn.WriteToUDP(eth(dst, s.mac, typ, payload), s.vm)
	return err
}

// await returns the first frame match accepts within timeout.
func (s *segment) await(ctx context.Context, timeout time.Duration, match func([]byte) bool) ([]byte, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				return nil, false
			}
			if match(f) {
				return f, true
			}
		case <-t.C:
			return nil, false
		case <-ctx.Done():
			return nil, false
		}
	}
}

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func eth(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	f := make([]byte, 14, 14+len(payload))
	copy(f, dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], typ)
	return append(f, payload...)
}

func arp(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	p := make([]byte, 28)
	binary.BigEndian.PutUint16(p[0:], 1)
	binary.BigEndian.PutUint16(p[2:], 0x0800)
	p[4], p[5] = 6, 4
	binary.BigEndian.PutUint16(p[6:], op)
	copy(p[8:], sha)
	s4 := spa.As4()
	copy(p[14:], s4[:])
	if tha != nil {
		copy(p[18:], tha)
	}
	t4 := tpa.As4()
	copy(p[24:], t4[:])
	return p
}

func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func ipv4(src, dst netip.Addr, proto byte, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(h[4:], 0x4b49)
	binary.BigEndian.PutUint16(h[6:], 0x4000) // don't fragment
	h[8], h[9] = 64, proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], checksum(h, 0))
	return append(h, payload...)
}

func icmpEcho(id, seq uint16) []byte {
	p := []byte{8, 0, 0, 0, 0, 0, 0, 0, 'k', 'i', 'l', 'n'}
	binary.BigEndian.PutUint16(p[4:], id)
	binary.BigEndian.PutUint16(p[6:], seq)
	binary.BigEndian.PutUint16(p[2:], checksum(p, 0))
	return p
}

func tcpSYN(src, dst netip.Addr, sport, dport uint16) []byte {
	p := make([]byte, 20)
	binary.BigEndian.PutUint16(p[0:], sport)
	binary.BigEndian.PutUint16(p[2:], dport)
	binary.BigEndian.PutUint32(p[4:], 0x6b696c6e)
	p[12] = 5 << 4
	p[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(p[14:], 64240)
	s, d := src.As4(), dst.As4()
	pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, 6, 0, 20)
	var sum uint32
	for i := 0; i < len(pseudo); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(pseudo[i:]))
	}
	binary.BigEndian.PutUint16(p[16:], checksum(p, sum))
	return p
}

// ipFrom parses an IPv4 frame from src with protocol proto, returning its payload.
func ipFrom(f []byte, src netip.Addr, proto byte) ([]byte, bool) {
	if len(f) < 34 || binary.BigEndian.Uint16(f[12:]) != typeIPv4 || f[14]>>4 != 4 || f[23] != proto {
		return nil, false
	}
	if netip.AddrFrom4([4]byte(f[26:30])) != src {
		return nil, false
	}
	ihl := int(f[14]&0x0f) * 4
	if len(f) < 14+ihl {
		return nil, false
	}
	return f[14+ihl:], true
}
