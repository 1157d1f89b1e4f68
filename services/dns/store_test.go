package dns

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
)

func TestRecordsFrom(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	later := now.Add(time.Hour)
	hosts := []store.Host{
		{Name: "res", MACs: []string{"52:54:00:00:00:01"}, IPv4: netip.MustParseAddr("10.1.0.5"), Aliases: []string{"r"}},
		{Name: "dyn", MACs: []string{"52:54:00:00:00:02", "52:54:00:00:00:03"}, Aliases: []string{"d"}},
		{Name: "off", MACs: []string{"52:54:00:00:00:04"}},
	}
	leases := []store.Lease{
		{IP: netip.MustParseAddr("10.1.0.6"), MAC: "52:54:00:00:00:01", State: store.LeaseBound, Expires: later}, // reserved host: ignored
		{IP: netip.MustParseAddr("10.1.0.7"), MAC: "52:54:00:00:00:02", State: store.LeaseBound, Expires: later}, // dyn
		{IP: netip.MustParseAddr("10.1.0.8"), MAC: "52:54:00:00:00:03", State: store.LeaseBound, Expires: later}, // dyn's second NIC: first wins
		{IP: netip.MustParseAddr("10.1.0.9"), MAC: "52:54:00:00:00:04", State: store.LeaseBound, Expires: now},   // expired
		{IP: netip.MustParseAddr("10.1.0.10"), MAC: "52:54:00:00:00:99", State: store.LeaseBound, Expires: later, Hostname: "laptop"},
		{IP: netip.MustParseAddr("10.1.0.11"), MAC: "52:54:00:00:00:98", State: store.LeaseOffered, Expires: later, Hostname: "offered"},
		{IP: netip.MustParseAddr("10.1.0.12"), MAC: "52:54:00:00:00:97", State: store.LeaseBound, Expires: later}, // no name
	}
	want := []Record{
		{Name: "res", Addr: netip.MustParseAddr("10.1.0.5"), Aliases: []string{"r"}},
		{Name: "dyn", Addr: netip.MustParseAddr("10.1.0.7"), Aliases: []string{"d"}},
		{Name: "laptop", Addr: netip.MustParseAddr("10.1.0.10")},
	}
	got := recordsFrom(hosts, leases, now)
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("recordsFrom mismatch (-want +got):\n%s", diff)
	}
}

// TestStoreSource runs the zone off a real machine database.
func TestStoreSource(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.CreateHost(ctx, store.Host{Name: "node1", MACs: []string{"52:54:00:00:00:01"},
		IPv4: netip.MustParseAddr("10.1.0.10"), Aliases: []string{"web"}}); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Hostname = "kiln"
	cfg.Provisioning.Domain = "lab.example"
	cfg.Provisioning.Subnets = []config.Subnet{{Name: "a", CIDR: "10.1.0.0/24"}}
	o := OptionsFromConfig(cfg, []netip.Addr{netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("192.0.2.1")})
	if diff := cmp.Diff([]netip.Addr{netip.MustParseAddr("10.1.0.1")}, o.NSAddrs, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("OptionsFromConfig NSAddrs mismatch (-want +got):\n%s", diff)
	}
	if o.Listen != ":53" {
		t.Errorf("OptionsFromConfig Listen = %q, want the default :53", o.Listen)
	}
	cfg.Provisioning.DNS.Listen = "127.0.0.1:5353"
	if got := OptionsFromConfig(cfg, nil).Listen; got != "127.0.0.1:5353" {
		t.Errorf("OptionsFromConfig with provisioning.dns.listen 127.0.0.1:5353: Listen = %q", got)
	}
	s, err := New(ctx, o, storeSource{st: st, now: time.Now}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ask := func(name string, qtype uint16) summary {
		return summarize(s.Handler().Respond(netip.MustParseAddr("10.1.0.50"), false, question(name, qtype)))
	}
	s.refresh(ctx)
	if got := ask("web.lab.example.", dns.TypeA); len(got.Answer) != 2 || got.Answer[1] != "node1.lab.example. 60 IN A 10.1.0.10" {
		t.Errorf("web.lab.example A = %+v, want CNAME to node1 at 10.1.0.10", got)
	}
	if got := ask("kiln.lab.example.", dns.TypeA); len(got.Answer) != 1 || got.Answer[0] != "kiln.lab.example. 60 IN A 10.1.0.1" {
		t.Errorf("kiln.lab.example A = %+v, want 10.1.0.1", got)
	}
	if err := st.PutLease(ctx, store.Lease{IP: netip.MustParseAddr("10.1.0.77"), Subnet: "a", MAC: "52:54:00:00:00:77",
		Hostname: "newbie", State: store.LeaseBound, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	s.refresh(ctx)
	if got := ask("77.0.1.10.in-addr.arpa.", dns.TypePTR); len(got.Answer) != 1 || got.Answer[0] != "77.0.1.10.in-addr.arpa. 60 IN PTR newbie.lab.example." {
		t.Errorf("PTR 10.1.0.77 after a new lease = %+v, want newbie.lab.example.", got)
	}
}
