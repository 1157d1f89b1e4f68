package dns

import (
	"context"
	"math"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/metrics/metricstest"
)

// TestMetricsLoopback asks a running server real questions over UDP and
// TCP and checks the counters moved by exactly what was asked.
func TestMetricsLoopback(t *testing.T) {
	reg := metrics.New()
	o := Options{
		Listen:         "127.0.0.1:0",
		Domain:         "lab.example",
		Subnets:        testSpec.Subnets,
		NSName:         "kiln",
		NSAddrs:        testSpec.NSAddrs,
		Upstreams:      []string{startUpstream(t)},
		AllowRecursion: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		PollInterval:   50 * time.Millisecond,
		Metrics:        reg,
	}
	port := startServerOpts(t, &fakeSource{version: 1, records: testRecords}, o)
	addr := net.JoinHostPort("127.0.0.1", port)
	// The zone is built by the refresh loop; wait until it answers.
	ask := func(proto, name string, qtype uint16) *dns.Msg {
		t.Helper()
		c := &dns.Client{Net: proto, Timeout: 2 * time.Second}
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatalf("%s %s %s: %v", proto, name, dns.TypeToString[qtype], err)
		}
		return r
	}
	for deadline := time.Now().Add(5 * time.Second); ask("udp", "node1.lab.example.", dns.TypeA).Rcode != dns.RcodeSuccess; {
		if time.Now().After(deadline) {
			t.Fatal("zone not served within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := metricstest.Scrape(t, reg)
	base := func(proto, typ, rcode string) float64 {
		v := before.Value("kiln_dns_queries_total", "proto", proto, "type", typ, "rcode", rcode)
		if math.IsNaN(v) { // no such series yet
			return 0
		}
		return v
	}
	udpA := base("udp", "A", "NOERROR")

	ask("udp", "node1.lab.example.", dns.TypeA)
	ask("tcp", "node2.lab.example.", dns.TypeA)
	ask("udp", "nope.lab.example.", dns.TypeA)
	ask("udp", "www.upstream.test.", dns.TypeA) // forwarded: a miss
	ask("udp", "www.upstream.test.", dns.TypeA) // then a hit
	ask("udp", "node1.lab.example.", 65000)     // a type nobody defined

	after := metricstest.Scrape(t, reg)
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"proto", "udp", "type", "A", "rcode", "NOERROR"}, udpA + 3},
		{[]string{"proto", "tcp", "type", "A", "rcode", "NOERROR"}, base("tcp", "A", "NOERROR") + 1},
		{[]string{"proto", "udp", "type", "A", "rcode", "NXDOMAIN"}, base("udp", "A", "NXDOMAIN") + 1},
		{[]string{"proto", "udp", "type", "other", "rcode", "NOERROR"}, base("udp", "other", "NOERROR") + 1},
	} {
		if got := after.Value("kiln_dns_queries_total", c.labels...); got != c.want {
			t.Errorf("kiln_dns_queries_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if got := after.Value("kiln_dns_cache_misses_total"); got != 1 {
		t.Errorf("cache misses = %v, want 1", got)
	}
	if got := after.Value("kiln_dns_cache_hits_total"); got != 1 {
		t.Errorf("cache hits = %v, want 1", got)
	}
	if got := after.Value("kiln_dns_cache_entries"); got != 1 {
		t.Errorf("cache entries = %v, want 1", got)
	}
	for _, f := range []string{"kiln_dns_dropped_total", "kiln_dns_upstream_errors_total"} {
		if after[f] == nil {
			t.Errorf("family %s missing", f)
		}
	}
}

// BenchmarkRespondCounted is a cache-hit answer with and without counting,
// the hottest DNS path: the difference is what metrics cost per query.
func BenchmarkRespondCounted(b *testing.B) {
	for _, counted := range []bool{false, true} {
		name := "uncounted"
		var reg *metrics.Registry
		if counted {
			name, reg = "counted", metrics.New()
		}
		b.Run(name, func(b *testing.B) {
			up := &fixedExchanger{}
			h := NewHandler(context.Background(), HandlerOptions{Forwarder: up, CacheSize: 100,
				AllowRecursion: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Metrics: reg}, testLogger(b))
			q := new(dns.Msg)
			q.SetQuestion("www.upstream.test.", dns.TypeA)
			w := &discardWriter{}
			h.ServeDNS(w, q) // fills the cache
			b.ReportAllocs()
			for b.Loop() {
				h.ServeDNS(w, q)
			}
		})
	}
}

type fixedExchanger struct{}

func (fixedExchanger) Exchange(_ context.Context, m *dns.Msg) (*dns.Msg, error) {
	return upstreamAnswer(m), nil
}

// discardWriter is a dns.ResponseWriter for a UDP client on loopback.
type discardWriter struct{}

func (discardWriter) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (discardWriter) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (discardWriter) WriteMsg(*dns.Msg) error     { return nil }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) Close() error                { return nil }
func (discardWriter) TsigStatus() error           { return nil }
func (discardWriter) TsigTimersOnly(bool)         {}
func (discardWriter) Hijack()                     {}
