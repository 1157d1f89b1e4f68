package dhcp

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/metrics/metricstest"
)

func TestMetricsCountExchanges(t *testing.T) {
	ts := newTestServer(t)
	reg := metrics.New()
	ts.metrics = newMetrics(reg, ts.db, ts.subnets, ts.now)

	offer, _ := ts.do(t, msgFrom(t, "52:54:00:00:00:01", dhcpv4.MessageTypeDiscover), ts.eth1)
	ts.do(t, msgFrom(t, "52:54:00:00:00:01", dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr))), ts.eth1)
	ts.do(t, msgFrom(t, "52:54:00:00:00:02", dhcpv4.MessageTypeDiscover), ts.eth1) // offered, not taken
	ts.do(t, msgFrom(t, "52:54:00:00:00:03", dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 9, 9, 9)))), ts.eth1) // NAK: not in the subnet
	ts.metrics.drop("rate limit")

	fams := metricstest.Scrape(t, reg)
	sub := func(kv ...string) []string { return append([]string{"subnet", "hall-a"}, kv...) }
	for _, c := range []struct {
		fam    string
		labels []string
		want   float64
	}{
		{"kiln_dhcp_requests_total", sub("type", "discover"), 2},
		{"kiln_dhcp_requests_total", sub("type", "request"), 2},
		{"kiln_dhcp_replies_total", sub("type", "offer"), 2},
		{"kiln_dhcp_replies_total", sub("type", "ack"), 1},
		{"kiln_dhcp_replies_total", sub("type", "nak"), 1},
		{"kiln_dhcp_dropped_total", []string{"reason", "rate_limit"}, 1},
		{"kiln_dhcp_errors_total", nil, 0},
		{"kiln_dhcp_pool_addresses", sub(), 100},
		{"kiln_dhcp_pool_leases", sub("state", "bound"), 1},
		{"kiln_dhcp_pool_leases", sub("state", "offered"), 1},
		{"kiln_dhcp_pool_leases", sub("state", "declined"), 0},
	} {
		if got := fams.Value(c.fam, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.fam, c.labels, got, c.want)
		}
	}
}

func TestTypeLabel(t *testing.T) {
	for in, want := range map[dhcpv4.MessageType]string{
		dhcpv4.MessageTypeDiscover: "discover", dhcpv4.MessageTypeNak: "nak", dhcpv4.MessageTypeInform: "inform",
		0: "other", 200: "other",
	} {
		if got := typeLabel(in); got != want {
			t.Errorf("typeLabel(%d) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkCount is what counting adds to one handled DHCP message (a
// request and its reply); compare BenchmarkDORA for the message itself.
func BenchmarkCount(b *testing.B) {
	sub := newSubnet(0, testSubnet())
	m := newMetrics(metrics.New(), nil, []*subnet{sub}, nil)
	b.ReportAllocs()
	for b.Loop() {
		m.request(sub, dhcpv4.MessageTypeDiscover)
		m.reply(sub, dhcpv4.MessageTypeOffer)
	}
}
