package syslog

import "kiln.dev/kiln/services/metrics"

// syslogMetrics are the syslog service's families. A nil *syslogMetrics
// counts nothing.
type syslogMetrics struct {
	messages      *metrics.CounterVec // proto, result
	storeFailures *metrics.Counter
	connections   *metrics.Gauge
	refused       *metrics.Counter
}

func newMetrics(reg *metrics.Registry) *syslogMetrics {
	if reg == nil {
		return nil
	}
	return &syslogMetrics{
		messages:      reg.CounterVec("kiln_syslog_messages_total", "Syslog messages received by protocol and outcome: accepted (queued for the database), rate_limited (over the per-source rate), queue_full, malformed.", "proto", "result"),
		storeFailures: reg.Counter("kiln_syslog_store_failures_total", "Accepted syslog messages lost because the database refused them."),
		connections:   reg.Gauge("kiln_syslog_tcp_connections", "Syslog TCP connections open now."),
		refused:       reg.Counter("kiln_syslog_tcp_refused_total", "Syslog TCP connections closed at once: too many in all or from one source."),
	}
}

func (m *syslogMetrics) count(proto, result string) {
	if m != nil {
		m.messages.With(proto, result).Inc()
	}
}

func (m *syslogMetrics) storeFailed(n int) {
	if m != nil {
		m.storeFailures.Add(uint64(n))
	}
}

func (m *syslogMetrics) conns(n int) {
	if m != nil {
		m.connections.Set(float64(n))
	}
}

func (m *syslogMetrics) dropConn() {
	if m != nil {
		m.refused.Inc()
	}
}
