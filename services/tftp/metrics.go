package tftp

import (
	"errors"

	"kiln.dev/kiln/services/metrics"
)

// tftpMetrics are the TFTP service's families. A nil *tftpMetrics counts
// nothing.
type tftpMetrics struct {
	requests *metrics.CounterVec // result
	bytes    *metrics.Counter
	active   *metrics.Gauge
	dropped  *metrics.Counter
}

func newMetrics(reg *metrics.Registry) *tftpMetrics {
	if reg == nil {
		return nil
	}
	return &tftpMetrics{
		requests: reg.CounterVec("kiln_tftp_requests_total", "TFTP read requests by outcome: ok, not_found, denied, busy, refused (writes, bad mode), aborted (by the client, as PXE ROMs do after asking tsize), timeout, failed.", "result"),
		bytes:    reg.Counter("kiln_tftp_sent_bytes_total", "File bytes TFTP clients acknowledged."),
		active:   reg.Gauge("kiln_tftp_transfers", "TFTP requests being handled now."),
		dropped:  reg.Counter("kiln_tftp_dropped_total", "TFTP requests dropped because too many were in progress."),
	}
}

// result names the outcome of a request for the result label.
func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrAccess):
		return "denied"
	case errors.Is(err, ErrBusy):
		return "busy"
	case errors.Is(err, ErrReadOnly), errors.Is(err, ErrMode), errors.Is(err, ErrTooLarge):
		return "refused"
	case errors.Is(err, ErrClientAbort):
		return "aborted"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	}
	return "failed"
}

func (m *tftpMetrics) start() {
	if m != nil {
		m.active.Add(1)
	}
}

// done counts a finished request that sent n acknowledged bytes.
func (m *tftpMetrics) done(err error, n int64) {
	if m == nil {
		return
	}
	m.active.Add(-1)
	m.requests.With(result(err)).Inc()
	if n > 0 {
		m.bytes.Add(uint64(n))
	}
}

func (m *tftpMetrics) drop() {
	if m != nil {
		m.dropped.Inc()
	}
}
