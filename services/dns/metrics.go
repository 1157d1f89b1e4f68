package dns

import (
	"context"

	"github.com/miekg/dns"

	"kiln.dev/kiln/services/metrics"
)

// dnsMetrics are the DNS service's families. A nil *dnsMetrics counts
// nothing.
type dnsMetrics struct {
	queries   *metrics.CounterVec // proto, type, rcode
	dropped   *metrics.Counter
	hits      *metrics.Counter
	misses    *metrics.Counter
	upstreamE *metrics.Counter
}

func newMetrics(reg *metrics.Registry, c *cache) *dnsMetrics {
	if reg == nil {
		return nil
	}
	reg.CollectFunc("kiln_dns_cache_entries", "Answers held in the forwarding cache.", metrics.KindGauge, nil,
		func(context.Context) ([]metrics.Sample, error) {
			return []metrics.Sample{{Value: float64(c.len())}}, nil
		})
	return &dnsMetrics{
		queries:   reg.CounterVec("kiln_dns_queries_total", "DNS questions answered, by transport (udp, tcp), query type and response code.", "proto", "type", "rcode"),
		dropped:   reg.Counter("kiln_dns_dropped_total", "DNS messages dropped without an answer (responses, unparseable)."),
		hits:      reg.Counter("kiln_dns_cache_hits_total", "Forwarded questions answered from the cache."),
		misses:    reg.Counter("kiln_dns_cache_misses_total", "Forwarded questions not in the cache (asked upstream)."),
		upstreamE: reg.Counter("kiln_dns_upstream_errors_total", "Forwarded questions no upstream answered (answered SERVFAIL)."),
	}
}

// answered counts one answer to r (resp nil: dropped).
func (m *dnsMetrics) answered(tcp bool, r, resp *dns.Msg) {
	if m == nil {
		return
	}
	if resp == nil {
		m.dropped.Inc()
		return
	}
	proto := "udp"
	if tcp {
		proto = "tcp"
	}
	qtype := "none"
	if len(r.Question) == 1 {
		qtype = typeLabel(r.Question[0].Qtype)
	}
	rcode, ok := dns.RcodeToString[resp.Rcode]
	if !ok {
		rcode = "other"
	}
	m.queries.With(proto, qtype, rcode).Inc()
}

// typeLabel names a query type from miekg/dns's fixed table; a number a
// client made up is "other", so clients cannot grow the series.
func typeLabel(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return "other"
}

func (m *dnsMetrics) cache(hit bool) {
	switch {
	case m == nil:
	case hit:
		m.hits.Inc()
	default:
		m.misses.Inc()
	}
}

func (m *dnsMetrics) upstreamError() {
	if m != nil {
		m.upstreamE.Inc()
	}
}
