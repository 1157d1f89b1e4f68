package dhcp

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"
)

func TestICMPProberLoopback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("ICMP probe needs a raw socket (root)")
	}
	p, err := newICMPProber(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	owner, err := p.Probe(context.Background(), netip.MustParseAddr("127.0.0.1"))
	if err != nil || owner == nil {
		t.Errorf("Probe(127.0.0.1) = %v, %v, want in use", owner, err)
	}
}

func TestChecksum(t *testing.T) {
	// RFC 1071's example bytes sum to 0xddf2; the checksum is its complement.
	if got := checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != ^uint16(0xddf2) {
		t.Errorf("checksum(RFC 1071 example) = %#04x, want %#04x", got, ^uint16(0xddf2))
	}
}
