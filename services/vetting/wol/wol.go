// Package wol sends Wake-on-LAN magic packets: six 0xff bytes and the
// target MAC sixteen times, as a UDP datagram to port 9 of the broadcast
// address of the segment the host is cabled to (NICs listen for the pattern
// anywhere in a frame, so UDP is only the carrier).
package wol

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// Port is the customary discard port magic packets go to.
const Port = 9

// Packet returns the magic packet waking mac.
func Packet(mac string) ([]byte, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return nil, fmt.Errorf("wake-on-LAN: %q is not an Ethernet MAC", mac)
	}
	p := make([]byte, 0, 102)
	p = append(p, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	for range 16 {
		p = append(p, hw...)
	}
	return p, nil
}

// Broadcast returns the directed broadcast address of prefix (IPv4).
func Broadcast(prefix netip.Prefix) (netip.Addr, error) {
	if !prefix.Addr().Is4() {
		return netip.Addr{}, fmt.Errorf("wake-on-LAN: %s is not an IPv4 subnet", prefix)
	}
	a := prefix.Masked().Addr().As4()
	host := uint32(1)<<(32-prefix.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), nil
}

// Send sends the magic packet for mac to each target (UDP address; a
// broadcast address needs SO_BROADCAST, which Send sets). It fails only if
// no target could be sent to.
func Send(ctx context.Context, mac string, targets []netip.AddrPort) error {
	p, err := Packet(mac)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		return errors.New("wake-on-LAN: no provisioning subnet to send to")
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	conn, err := lc.ListenPacket(ctx, "udp4", ":0")
	if err != nil {
		return fmt.Errorf("wake-on-LAN: %w", err)
	}
	defer conn.Close()
	var errs []error
	for _, t := range targets {
		if _, err := conn.WriteTo(p, net.UDPAddrFromAddrPort(t)); err != nil {
			errs = append(errs, fmt.Errorf("to %s: %w", t, err))
		}
	}
	if len(errs) == len(targets) {
		return fmt.Errorf("wake-on-LAN for %s: %w", mac, errors.Join(errs...))
	}
	return nil
}
