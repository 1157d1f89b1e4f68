package wol

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestPacket(t *testing.T) {
	p, err := Packet("52:54:00:AB:cd:01")
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 102 || !bytes.Equal(p[:6], bytes.Repeat([]byte{0xff}, 6)) {
		t.Fatalf("packet %x: want 6×ff then 16 MACs", p)
	}
	mac := []byte{0x52, 0x54, 0x00, 0xab, 0xcd, 0x01}
	for i := range 16 {
		if got := p[6+6*i : 12+6*i]; !bytes.Equal(got, mac) {
			t.Fatalf("repetition %d is %x", i, got)
		}
	}
	for _, bad := range []string{"", "52:54:00:ab:cd", "00:00:00:00:fe:80:00:00:00:00:00:00:00:00:00:00:00:00:00:01", "zz:54:00:ab:cd:01"} {
		if _, err := Packet(bad); err == nil {
			t.Errorf("Packet(%q) succeeded", bad)
		}
	}
}

func TestBroadcast(t *testing.T) {
	for in, want := range map[string]string{"10.9.0.0/24": "10.9.0.255", "10.9.0.17/28": "10.9.0.31", "192.168.0.0/16": "192.168.255.255", "10.0.0.1/32": "10.0.0.1"} {
		got, err := Broadcast(netip.MustParsePrefix(in))
		if err != nil || got.String() != want {
			t.Errorf("Broadcast(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := Broadcast(netip.MustParsePrefix("fd00::/64")); err == nil {
		t.Error("IPv6 subnet accepted")
	}
}

// TestSend receives the packet on loopback, as a host's NIC would see it.
func TestSend(t *testing.T) {
	ln, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	to := netip.MustParseAddrPort(ln.LocalAddr().String())
	if err := Send(context.Background(), "52:54:00:ab:cd:01", []netip.AddrPort{to}); err != nil {
		t.Fatal(err)
	}
	ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 200)
	n, _, err := ln.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Packet("52:54:00:ab:cd:01")
	if !bytes.Equal(buf[:n], want) {
		t.Fatalf("received %x, want %x", buf[:n], want)
	}
	if err := Send(context.Background(), "52:54:00:ab:cd:01", nil); err == nil {
		t.Error("Send with no targets succeeded")
	}
}
