package ntp

import (
	"context"
	"errors"
	"time"

	"kiln.dev/kiln/services/metrics"
)

// serverMetrics are the NTP server's families. A nil *serverMetrics counts
// nothing.
type serverMetrics struct {
	requests   *metrics.CounterVec // result
	sendErrors *metrics.Counter
}

func newServerMetrics(reg *metrics.Registry, st *State, now func() time.Time) *serverMetrics {
	if reg == nil {
		return nil
	}
	reg.CollectFunc("kiln_ntp_synced", "1 while kiln's clock is synchronized to an upstream server and served as such, 0 while NTP clients are told it is not (leap indicator 3).", metrics.KindGauge, nil,
		func(context.Context) ([]metrics.Sample, error) {
			v := 0.0
			if st.Get().At(now()).Synced {
				v = 1
			}
			return []metrics.Sample{{Value: v}}, nil
		})
	reg.CollectFunc("kiln_ntp_stratum", "Stratum kiln serves: the upstream's plus one, 16 while unsynchronized.", metrics.KindGauge, nil,
		func(context.Context) ([]metrics.Sample, error) {
			v := float64(StratumUnsynchronized)
			if s := st.Get().At(now()); s.Synced {
				v = float64(s.Stratum)
			}
			return []metrics.Sample{{Value: v}}, nil
		})
	return &serverMetrics{
		requests:   reg.CounterVec("kiln_ntp_requests_total", "NTP requests by outcome: served (kiln's clock synchronized), served_unsynced (answered with leap indicator 3, stratum 16), ignored (not a client request of NTP versions 1-4), malformed (shorter than 48 bytes).", "result"),
		sendErrors: reg.Counter("kiln_ntp_send_errors_total", "NTP replies the kernel refused to send."),
	}
}

func (m *serverMetrics) count(result string) {
	if m != nil {
		m.requests.With(result).Inc()
	}
}

func (m *serverMetrics) sendFailed() {
	if m != nil {
		m.sendErrors.Inc()
	}
}

// syncMetrics are the syncer's families. A nil *syncMetrics counts nothing.
type syncMetrics struct {
	queries     *metrics.CounterVec // result
	adjustments *metrics.CounterVec // kind
	lastOffset  *metrics.Gauge
}

func newSyncMetrics(reg *metrics.Registry) *syncMetrics {
	if reg == nil {
		return nil
	}
	return &syncMetrics{
		queries:     reg.CounterVec("kiln_ntp_upstream_queries_total", "Queries to upstream NTP servers by outcome: ok, unsynchronized (the server's clock is not synchronized), kiss (kiss-o'-death), bogus, failed (timeout, unreachable).", "result"),
		adjustments: reg.CounterVec("kiln_ntp_clock_adjustments_total", "Corrections of kiln's clock by kind: slew, step, deferred (an offset above the step threshold waiting for a second poll).", "kind"),
		lastOffset:  reg.Gauge("kiln_ntp_offset_seconds", "Offset of kiln's clock from the selected upstream server at the last poll (positive: kiln was behind)."),
	}
}

func (m *syncMetrics) query(err error) {
	if m == nil {
		return
	}
	r := "failed"
	switch {
	case err == nil:
		r = "ok"
	case errors.Is(err, ErrUnsynchronized):
		r = "unsynchronized"
	case errors.Is(err, ErrKissOfDeath):
		r = "kiss"
	case errors.Is(err, ErrBogus):
		r = "bogus"
	}
	m.queries.With(r).Inc()
}

func (m *syncMetrics) adjust(kind string) {
	if m != nil {
		m.adjustments.With(kind).Inc()
	}
}

func (m *syncMetrics) offset(d time.Duration) {
	if m != nil {
		m.lastOffset.Set(d.Seconds())
	}
}
