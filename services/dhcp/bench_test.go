package dhcp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"kiln.dev/kiln/services/config"
)

// BenchmarkDORA runs DISCOVER and REQUEST of new clients through the
// handler and a real machine database (no sockets, no probes).
func BenchmarkDORA(b *testing.B) {
	sub := config.Subnet{Name: "bench", Interface: "eth1", CIDR: "10.99.0.0/16", Mode: config.ModeAuthoritative,
		Pool: config.Pool{Start: "10.99.1.0", End: "10.99.255.254"}}
	ts := newTestServer(b, sub)
	ts.log = slog.New(slog.DiscardHandler)
	for _, s := range ts.subnets {
		s.probe = nil
	}
	ctx := context.Background()
	in := ingress{ifname: "eth1", ifaddr: netip.MustParseAddr("10.99.0.1"), dst: netip.MustParseAddr("255.255.255.255"),
		peer: netip.MustParseAddrPort("0.0.0.0:68")}
	b.ResetTimer()
	for i := range b.N {
		mac := fmt.Sprintf("02:00:00:%02x:%02x:%02x", byte(i>>16), byte(i>>8), byte(i))
		offer, _, err := ts.handle(ctx, msgFrom(b, mac, dhcpv4.MessageTypeDiscover), in)
		if err != nil || offer == nil {
			b.Fatalf("DISCOVER %d: %v", i, err)
		}
		ack, _, err := ts.handle(ctx, msgFrom(b, mac, dhcpv4.MessageTypeRequest,
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 99, 0, 1))),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr))), in)
		if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck {
			b.Fatalf("REQUEST %d: %v %v", i, ack, err)
		}
	}
}

// BenchmarkDORAParallel runs DORAs of new clients from 4 goroutines (the
// service's worker count) and reports the p99 latency of one DORA.
func BenchmarkDORAParallel(b *testing.B) {
	sub := config.Subnet{Name: "bench", Interface: "eth1", CIDR: "10.99.0.0/16", Mode: config.ModeAuthoritative,
		Pool: config.Pool{Start: "10.99.1.0", End: "10.99.255.254"}}
	ts := newTestServer(b, sub)
	ts.log = slog.New(slog.DiscardHandler)
	for _, s := range ts.subnets {
		s.probe = nil
	}
	ctx := context.Background()
	in := ingress{ifname: "eth1", ifaddr: netip.MustParseAddr("10.99.0.1"), dst: netip.MustParseAddr("255.255.255.255"),
		peer: netip.MustParseAddrPort("0.0.0.0:68")}
	var mu sync.Mutex
	var lat []time.Duration
	var next atomic.Int64
	b.SetParallelism(2) // 2 x GOMAXPROCS(2) = 4 goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			mac := fmt.Sprintf("02:00:00:%02x:%02x:%02x", byte(i>>16), byte(i>>8), byte(i))
			start := time.Now()
			offer, _, err := ts.handle(ctx, msgFrom(b, mac, dhcpv4.MessageTypeDiscover), in)
			if err != nil || offer == nil {
				b.Errorf("DISCOVER %d: %v", i, err)
				return
			}
			ack, _, err := ts.handle(ctx, msgFrom(b, mac, dhcpv4.MessageTypeRequest,
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 99, 0, 1))),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr))), in)
			if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck {
				b.Errorf("REQUEST %d: %v %v", i, ack, err)
				return
			}
			d := time.Since(start)
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}
	})
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}
