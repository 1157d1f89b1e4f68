package dhcp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"kiln.dev/kiln/services/store"
)

// floodMAC is the i-th made-up MAC of a flood (locally administered).
func floodMAC(i int) string {
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:01", byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
}

// dora runs DISCOVER and REQUEST for mac and returns the ACKed address ("" if none).
func (ts *testServer) dora(t testing.TB, mac string) string {
	t.Helper()
	ctx := context.Background()
	offer, _, err := ts.handle(ctx, msgFrom(t, mac, dhcpv4.MessageTypeDiscover), ts.eth1)
	if err != nil || offer == nil {
		return ""
	}
	ack, _, err := ts.handle(ctx, msgFrom(t, mac, dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr))), ts.eth1)
	if err != nil || ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		return ""
	}
	return ack.YourIPAddr.String()
}

// TestFloodOfUnknownMACs: 10,000 made-up MACs DISCOVER at 1000/s (on the
// test's clock) on a 100-address pool. Registered machines are still
// served all along; nobody is enrolled for a DISCOVER; machines that
// complete an exchange are enrolled only within the rate and the cap; the
// server's per-subnet state stays bounded by the pool.
func TestFloodOfUnknownMACs(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t)
	ts.log = slog.New(slog.DiscardHandler) // 10,000 "pool full" lines otherwise
	ts.subnets[0].probe = nil
	ts.enrolRate = newLimiter(1, 20, 1, ts.now) // 20 at once, then 1/s
	ts.maxEnrolled = 25
	var known []string
	for i := range 5 {
		mac := fmt.Sprintf("52:54:00:00:10:%02x", i)
		if _, err := ts.db.CreateHost(ctx, store.Host{Name: fmt.Sprintf("node%d", i), MACs: []string{mac}}); err != nil {
			t.Fatal(err)
		}
		known = append(known, mac)
	}
	served, rounds := 0, 0
	for i := range 10000 {
		ts.handle(ctx, msgFrom(t, floodMAC(i), dhcpv4.MessageTypeDiscover), ts.eth1) // "pool full" errors are expected
		if i%1000 == 999 {
			*ts.clock = ts.now().Add(time.Second)
			rounds++
			for _, mac := range known {
				if ts.dora(t, mac) != "" {
					served++
				}
			}
		}
	}
	if want := rounds * len(known); served != want {
		t.Errorf("registered machines served during the flood: %d of %d DORAs, want all", served, want)
	}
	if n, err := ts.db.CountHosts(ctx, store.EnrolledRole); err != nil || n != 0 {
		t.Errorf("hosts enrolled by DISCOVERs of the flood = %d, %v, want 0", n, err)
	}
	if n := len(ts.subnets[0].unknownOffers); n > ts.subnets[0].poolSize {
		t.Errorf("unknown offers tracked = %d, want at most the pool's %d", n, ts.subnets[0].poolSize)
	}
	// Made-up MACs that complete their exchange: enrolled up to the burst
	// of 20 at once, then up to the cap of 25 as the rate allows; each
	// still gets its address.
	*ts.clock = ts.now().Add(time.Hour) // the flood's offers and the first DORAs' leases are long gone
	acked := 0
	for i := range 40 {
		if ts.dora(t, floodMAC(20000+i)) != "" {
			acked++
		}
	}
	if n, _ := ts.db.CountHosts(ctx, store.EnrolledRole); n != 20 || acked != 40 {
		t.Errorf("after 40 DORAs of new MACs at once: %d enrolled, %d ACKed; want 20 (the burst), 40", n, acked)
	}
	for i := range 20 {
		*ts.clock = ts.now().Add(time.Second)
		ts.dora(t, floodMAC(30000+i))
	}
	if n, _ := ts.db.CountHosts(ctx, store.EnrolledRole); n != 25 {
		t.Errorf("after 20 more DORAs, one a second: %d enrolled, want the cap of 25", n)
	}
}

// TestLimiterBounded: 52,000 MACs leave the limiter at its cap, and a MAC
// seen again keeps its bucket while the flood evicts the oldest.
func TestLimiterBounded(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(2, 3, 1000, func() time.Time { return now })
	busy := [6]byte{0x52}
	for range 3 {
		l.Allow(busy) // its bucket is empty now
	}
	for i := range 52000 {
		l.Allow([6]byte{2, byte(i >> 16), byte(i >> 8), byte(i)})
		if i%500 == 0 && l.Allow(busy) {
			t.Fatalf("the busy MAC got a fresh bucket after %d flood MACs (it must stay recently seen)", i)
		}
	}
	if n := l.Len(); n != 1000 {
		t.Errorf("limiter tracks %d MACs after a flood of 52,000, want its cap of 1000", n)
	}
}

// BenchmarkLimiterFlood is one packet of a new MAC while the limiter is
// full of a flood's MACs (the old purge scanned the whole map: 1.6 ms at
// 52,000 MACs).
func BenchmarkLimiterFlood(b *testing.B) {
	now := time.Unix(0, 0)
	l := newLimiter(2, 10, limiterMACs, func() time.Time { return now })
	for i := range 52000 {
		l.Allow([6]byte{2, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	b.ResetTimer()
	for i := range b.N {
		l.Allow([6]byte{3, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
	}
}

// BenchmarkKnownDORAUnderFlood is a registered machine's DORA (a real
// database) while made-up MACs keep a 100-address pool full of offers:
// each iteration floods 100 DISCOVERs, then times one known DORA.
func BenchmarkKnownDORAUnderFlood(b *testing.B) {
	ctx := context.Background()
	ts := newTestServer(b)
	ts.log = slog.New(slog.DiscardHandler)
	ts.subnets[0].probe = nil
	var known []string
	for i := range 50 {
		mac := fmt.Sprintf("52:54:00:00:20:%02x", i)
		if _, err := ts.db.CreateHost(ctx, store.Host{Name: fmt.Sprintf("bench%d", i), MACs: []string{mac}}); err != nil {
			b.Fatal(err)
		}
		known = append(known, mac)
	}
	n := 0
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		*ts.clock = ts.now().Add(2 * time.Minute) // the known leases and old offers expire: every DORA starts afresh
		for range 100 {
			ts.handle(ctx, msgFrom(b, floodMAC(n), dhcpv4.MessageTypeDiscover), ts.eth1)
			n++
		}
		b.StartTimer()
		if ts.dora(b, known[i%len(known)]) == "" {
			b.Fatalf("known DORA %d not served", i)
		}
	}
}
