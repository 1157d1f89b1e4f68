package metrics_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"kiln.dev/kiln/services/metrics"
)

// The hot-path costs: what a DHCP or DNS answer pays per counted event.
func BenchmarkCounterInc(b *testing.B) {
	c := metrics.New().Counter("kiln_x_total", "X.")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc()
		}
	})
}

func BenchmarkCounterVecWith(b *testing.B) {
	v := metrics.New().CounterVec("kiln_dns_queries_total", "Q.", "type", "rcode")
	types := []string{"A", "AAAA", "PTR", "SRV"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			v.With(types[i%len(types)], "NOERROR").Inc()
			i++
		}
	})
}

func BenchmarkWriteText(b *testing.B) {
	r := metrics.New()
	v := r.CounterVec("kiln_dhcp_requests_total", "R.", "subnet", "type")
	for i := range 200 {
		v.With(fmt.Sprintf("subnet-%d", i%10), fmt.Sprintf("t%d", i)).Inc()
	}
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		r.WriteText(context.Background(), &buf)
	}
}
