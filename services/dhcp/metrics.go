package dhcp

import (
	"context"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/store"
)

// dhcpMetrics are the DHCP service's families. A nil *dhcpMetrics counts
// nothing, so handler tests need none.
type dhcpMetrics struct {
	requests *metrics.CounterVec // subnet, type
	replies  *metrics.CounterVec // subnet, type
	dropped  *metrics.CounterVec // reason
	failed   *metrics.Counter
}

// messageTypes are the label values of message types (RFC 2132 9.6 and
// later RFCs); anything else is "other".
var messageTypes = func() map[dhcpv4.MessageType]string {
	m := map[dhcpv4.MessageType]string{}
	for t := dhcpv4.MessageType(1); t <= 18; t++ {
		if s := t.String(); !strings.HasPrefix(s, "unknown") {
			m[t] = strings.ToLower(s)
		}
	}
	return m
}()

func typeLabel(t dhcpv4.MessageType) string {
	if s, ok := messageTypes[t]; ok {
		return s
	}
	return "other"
}

// newMetrics registers the DHCP families on reg; pool use is read from the
// leases table at every scrape.
func newMetrics(reg *metrics.Registry, db *store.Store, subs []*subnet, now func() time.Time) *dhcpMetrics {
	m := &dhcpMetrics{
		requests: reg.CounterVec("kiln_dhcp_requests_total", "DHCP messages received, by subnet and message type (discover, request, decline, release, inform).", "subnet", "type"),
		replies:  reg.CounterVec("kiln_dhcp_replies_total", "DHCP replies sent, by subnet and message type (offer, ack, nak).", "subnet", "type"),
		dropped:  reg.CounterVec("kiln_dhcp_dropped_total", "DHCP packets dropped before handling, by reason (rate_limit, workers_busy, malformed).", "reason"),
		failed:   reg.Counter("kiln_dhcp_errors_total", "DHCP requests left unanswered because of an error (see the service log)."),
	}
	var pools []*subnet
	for _, s := range subs {
		if s.cfg.Mode == config.ModeAuthoritative && s.poolSize > 0 {
			pools = append(pools, s)
		}
	}
	reg.CollectFunc("kiln_dhcp_pool_addresses", "Addresses in the subnet's dynamic pool.", metrics.KindGauge, []string{"subnet"},
		func(context.Context) ([]metrics.Sample, error) {
			var out []metrics.Sample
			for _, s := range pools {
				out = append(out, metrics.Sample{LabelValues: []string{s.cfg.Name}, Value: float64(s.poolSize)})
			}
			return out, nil
		})
	reg.CollectFunc("kiln_dhcp_pool_leases", "Pool addresses held now, by subnet and lease state (bound, offered, declined).", metrics.KindGauge, []string{"subnet", "state"},
		func(ctx context.Context) ([]metrics.Sample, error) {
			return poolLeases(ctx, db, pools, now())
		})
	return m
}

// poolLeases counts the active leases inside each pool by state.
func poolLeases(ctx context.Context, db *store.Store, pools []*subnet, now time.Time) ([]metrics.Sample, error) {
	var out []metrics.Sample
	for _, s := range pools {
		ls, err := db.Leases(ctx, s.cfg.Name)
		if err != nil {
			return nil, err
		}
		n := map[store.LeaseState]int{}
		for _, l := range ls {
			if s.inPool(l.IP) && l.Active(now) {
				n[l.State]++
			}
		}
		for _, st := range []store.LeaseState{store.LeaseBound, store.LeaseOffered, store.LeaseDeclined} {
			out = append(out, metrics.Sample{LabelValues: []string{s.cfg.Name, string(st)}, Value: float64(n[st])})
		}
	}
	return out, nil
}

func (m *dhcpMetrics) request(sub *subnet, t dhcpv4.MessageType) {
	if m != nil {
		m.requests.With(sub.cfg.Name, typeLabel(t)).Inc()
	}
}

func (m *dhcpMetrics) reply(sub *subnet, t dhcpv4.MessageType) {
	if m != nil {
		m.replies.With(sub.cfg.Name, typeLabel(t)).Inc()
	}
}

// drop counts a dropped packet; why is the log's reason ("rate limit").
func (m *dhcpMetrics) drop(why string) {
	if m != nil {
		m.dropped.With(strings.ReplaceAll(why, " ", "_")).Inc()
	}
}

func (m *dhcpMetrics) error() {
	if m != nil {
		m.failed.Inc()
	}
}
