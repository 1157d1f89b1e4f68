package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
	"kiln.dev/kiln/internal/testlog"
)

// testLogger routes logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return testlog.New(t, slog.LevelDebug).With("component", "dns")
}

var testSpec = ZoneSpec{
	Domain:      "lab.example",
	Subnets:     []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("10.2.0.0/22")},
	NSName:      "kiln",
	NSAddrs:     []netip.Addr{netip.MustParseAddr("10.1.0.1")},
	TTL:         60,
	NegativeTTL: 30,
	Serial:      7,
}

var testRecords = []Record{
	{Name: "node1", Addr: netip.MustParseAddr("10.1.0.10"), Aliases: []string{"web", "www.lab.example."}},
	{Name: "Node2.lab.example", Addr: netip.MustParseAddr("10.2.3.20")},
	{Name: "a.rack1", Addr: netip.MustParseAddr("10.1.0.11")},
	{Name: "outside", Addr: netip.MustParseAddr("192.0.2.5"), Aliases: []string{"ext"}},
	{Name: "noaddr"},
	{Name: "bad name", Addr: netip.MustParseAddr("10.1.0.12")},
	{Name: "node1", Addr: netip.MustParseAddr("10.1.0.13")},                              // duplicate: first wins
	{Name: "leased", Addr: netip.MustParseAddr("10.1.0.14"), Aliases: []string{"node2"}}, // alias collides with a host
	{Name: "kiln", Addr: netip.MustParseAddr("10.1.0.1")},                                // the appliance itself: silent
}

func mustZone(t testing.TB) *Zone {
	t.Helper()
	z, _, err := BuildZone(testSpec, testRecords)
	if err != nil {
		t.Fatalf("BuildZone: %v", err)
	}
	return z
}

func TestReverseZones(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"10.1.0.0/24", []string{"0.1.10.in-addr.arpa."}, false},
		{"10.1.0.7/24", []string{"0.1.10.in-addr.arpa."}, false},
		{"10.2.0.0/22", []string{"0.2.10.in-addr.arpa.", "1.2.10.in-addr.arpa.", "2.2.10.in-addr.arpa.", "3.2.10.in-addr.arpa."}, false},
		{"172.16.0.0/16", []string{"16.172.in-addr.arpa."}, false},
		{"10.0.0.0/8", []string{"10.in-addr.arpa."}, false},
		{"192.168.5.128/25", []string{"5.168.192.in-addr.arpa."}, false},
		{"192.168.5.9/32", []string{"5.168.192.in-addr.arpa."}, false},
		{"0.0.0.0/0", nil, true},
		{"2001:db8::/64", nil, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := reverseZones(netip.MustParsePrefix(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("reverseZones(%s) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("reverseZones(%s) mismatch (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestQualify(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"node1", "node1.lab.example.", true},
		{"NODE1", "node1.lab.example.", true},
		{"node1.lab.example", "node1.lab.example.", true},
		{"node1.lab.example.", "node1.lab.example.", true},
		{"a.rack1", "a.rack1.lab.example.", true},
		{"_svc", "_svc.lab.example.", true},
		{"lab.example", "", false},
		{"", "", false},
		{"-bad", "", false},
		{"bad-", "", false},
		{"has space", "", false},
		{"a..b", "", false},
		{"ünï", "", false},
		{strings.Repeat("a", 64), "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := qualify(tc.in, "lab.example.")
			if got != tc.want || ok != tc.ok {
				t.Errorf("qualify(%q) = %q, %v, want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestBuildZoneWarnings(t *testing.T) {
	_, warns, err := BuildZone(testSpec, testRecords)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`alias "node2" of "leased": name already used by host 10.2.3.20, not published`,
		`host "bad name": not a valid host name inside lab.example., not published`,
		`host "node1" (10.1.0.13): name already used by host 10.1.0.10, not published`,
	}
	if diff := cmp.Diff(want, warns); diff != "" {
		t.Errorf("BuildZone warnings mismatch (-want +got):\n%s", diff)
	}
	if _, _, err := BuildZone(ZoneSpec{Domain: "bad..domain"}, nil); err == nil {
		t.Errorf("BuildZone(domain bad..domain) = nil error, want error")
	}
	// No site domain (DNS enabled without provisioning.domain): the relative
	// default name server name must not stop the service.
	if _, _, err := BuildZone(ZoneSpec{NSName: "kiln", Subnets: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/24")}}, nil); err != nil {
		t.Errorf("BuildZone(no domain, NSName kiln) = %v, want nil", err)
	}
}

// fakeUpstream answers from a table and counts questions.
type fakeUpstream struct {
	// mu guards calls.
	mu    sync.Mutex
	calls int
	err   error
	// answer builds the upstream reply to a question.
	answer func(q *dns.Msg) *dns.Msg
}

func (f *fakeUpstream) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return f.answer(m), nil
}

func (f *fakeUpstream) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// upstreamAnswer answers like a small recursive resolver.
func upstreamAnswer(q *dns.Msg) *dns.Msg {
	r := new(dns.Msg)
	r.SetReply(q)
	r.RecursionAvailable = true
	name := strings.ToLower(q.Question[0].Name)
	switch {
	case name == "www.upstream.test." && q.Question[0].Qtype == dns.TypeA:
		rr, _ := dns.NewRR("www.upstream.test. 300 IN A 198.51.100.7")
		r.Answer = append(r.Answer, rr)
	case name == "big.upstream.test.":
		for i := 0; i < 20; i++ {
			rr, _ := dns.NewRR(fmt.Sprintf("big.upstream.test. 300 IN TXT \"%s-%02d\"", strings.Repeat("x", 60), i))
			r.Answer = append(r.Answer, rr)
		}
	case name == "short.upstream.test.":
		rr, _ := dns.NewRR("short.upstream.test. 5 IN A 198.51.100.8")
		r.Answer = append(r.Answer, rr)
	default:
		r.Rcode = dns.RcodeNameError
		soa, _ := dns.NewRR("upstream.test. 3600 IN SOA ns.upstream.test. h.upstream.test. 1 2 3 4 20")
		r.Ns = append(r.Ns, soa)
	}
	return r
}

var (
	insider  = netip.MustParseAddr("10.1.0.50")
	outsider = netip.MustParseAddr("203.0.113.9")
)

func newTestHandler(t testing.TB, up Exchanger, now func() time.Time) *Handler {
	h := NewHandler(context.Background(), HandlerOptions{
		Forwarder:      up,
		AllowRecursion: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")},
		CacheSize:      100,
		Now:            now,
	}, testLogger(t))
	h.SetZone(mustZone(t))
	return h
}

func question(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

// summary is a compact, comparable view of an answer.
type summary struct {
	Rcode      string
	AA, RA, TC bool
	Answer     []string
	Ns         []string
	Extra      []string
}

func summarize(m *dns.Msg) summary {
	s := summary{Rcode: dns.RcodeToString[m.Rcode], AA: m.Authoritative, RA: m.RecursionAvailable, TC: m.Truncated}
	str := func(rrs []dns.RR) []string {
		var out []string
		for _, rr := range rrs {
			if rr.Header().Rrtype == dns.TypeOPT {
				continue
			}
			out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
		}
		return out
	}
	s.Answer, s.Ns, s.Extra = str(m.Answer), str(m.Ns), str(m.Extra)
	return s
}

const (
	soaLab = "lab.example. 30 IN SOA kiln.lab.example. hostmaster.lab.example. 7 3600 600 86400 30"
	soaRev = "0.1.10.in-addr.arpa. 30 IN SOA kiln.lab.example. hostmaster.lab.example. 7 3600 600 86400 30"
)

func TestRespond(t *testing.T) {
	up := &fakeUpstream{answer: upstreamAnswer}
	h := newTestHandler(t, up, nil)
	for _, tc := range []struct {
		name   string
		client netip.Addr
		q      *dns.Msg
		want   summary
	}{
		{"A host", insider, question("node1.lab.example.", dns.TypeA), summary{
			Rcode: "NOERROR", AA: true, RA: true,
			Answer: []string{"node1.lab.example. 60 IN A 10.1.0.10"}}},
		{"A case-insensitive", insider, question("NoDe2.Lab.Example.", dns.TypeA), summary{
			Rcode: "NOERROR", AA: true, RA: true,
			Answer: []string{"node2.lab.example. 60 IN A 10.2.3.20"}}},
		{"A outside subnets", insider, question("outside.lab.example.", dns.TypeA), summary{
			Rcode: "NOERROR", AA: true, RA: true,
			Answer: []string{"outside.lab.example. 60 IN A 192.0.2.5"}}},
		{"A for NS name", insider, question("kiln.lab.example.", dns.TypeA), summary{
			Rcode: "NOERROR", AA: true, RA: true,
			Answer: []string{"kiln.lab.example. 60 IN A 10.1.0.1"}}},
		{"CNAME chased for A", insider, question("web.lab.example.", dns.TypeA), summary{
			Rcode: "NOERROR", AA: true, RA: true,
			Answer: []string{"web.lab.example. 60 IN CNAME node1.lab.example.", "node1.lab.example. 60 IN A 10.1.0.10"}}},
		{"CNAME asked", insider, question("www.lab.example.", dns.TypeCNAME), summary{
			Rcode: "NOERROR", AA: true, RA: true,
			Answer: []string{"www.lab.example. 60 IN CNAME node1.lab.example."}}},
		{"CNAME to name without AAAA", insider, question("web.lab.example.", dns.TypeAAAA), summary{
			Rcode: "NOERROR", AA: true, RA: true,
			Answer: []string{"web.lab.example. 60 IN CNAME node1.lab.example."},
			Ns:     []string{soaLab}}},
		{"NODATA AAAA", insider, question("node1.lab.example.", dns.TypeAAAA), summary{
			Rcode: "NOERROR", AA: true, RA: true, Ns: []string{soaLab}}},
		{"NODATA empty non-terminal", insider, question("rack1.lab.example.", dns.TypeA), summary{
			Rcode: "NOERROR", AA: true, RA: true, Ns: []string{soaLab}}},
		{"A below empty non-terminal", insider, question("a.rack1.lab.example.", dns.TypeA), summary{
			Rcode: "NOERROR", AA: true, RA: true,
			Answer: []string{"a.rack1.lab.example. 60 IN A 10.1.0.11"}}},
		{"NXDOMAIN", insider, question("nope.lab.example.", dns.TypeA), summary{
			Rcode: "NXDOMAIN", AA: true, RA: true, Ns: []string{soaLab}}},
		{"NXDOMAIN host without address", insider, question("noaddr.lab.example.", dns.TypeA), summary{
			Rcode: "NXDOMAIN", AA: true, RA: true, Ns: []string{soaLab}}},
		{"NXDOMAIN skipped duplicate host wins nothing", insider, question("bad.lab.example.", dns.TypeA), summary{
			Rcode: "NXDOMAIN", AA: true, RA: true, Ns: []string{soaLab}}},
		{"SOA apex", insider, question("lab.example.", dns.TypeSOA), summary{
			Rcode: "NOERROR", AA: true, RA: true,
			Answer: []string{"lab.example. 60 IN SOA kiln.lab.example. hostmaster.lab.example. 7 3600 600 86400 30"}}},
		{"NS apex with glue", insider, question("lab.example.", dns.TypeNS), summary{
			Rcode: "NOERROR", AA: true, RA: true,
			Answer: []string{"lab.example. 60 IN NS kiln.lab.example."},
			Extra:  []string{"kiln.lab.example. 60 IN A 10.1.0.1"}}},
		{"apex A is NODATA", insider, question("lab.example.", dns.TypeA), summary{
			Rcode: "NOERROR", AA: true, RA: true, Ns: []string{soaLab}}},
		{"PTR host", insider, question("10.0.1.10.in-addr.arpa.", dns.TypePTR), summary{
			Rcode: "NOERROR", AA: true, RA: true,
			Answer: []string{"10.0.1.10.in-addr.arpa. 60 IN PTR node1.lab.example."}}},
		{"PTR in split /22", insider, question("20.3.2.10.in-addr.arpa.", dns.TypePTR), summary{
			Rcode: "NOERROR", AA: true, RA: true,
			Answer: []string{"20.3.2.10.in-addr.arpa. 60 IN PTR node2.lab.example."}}},
		{"PTR appliance", insider, question("1.0.1.10.in-addr.arpa.", dns.TypePTR), summary{
			Rcode: "NOERROR", AA: true, RA: true,
			Answer: []string{"1.0.1.10.in-addr.arpa. 60 IN PTR kiln.lab.example."}}},
		{"PTR NXDOMAIN in zone", insider, question("99.0.1.10.in-addr.arpa.", dns.TypePTR), summary{
			Rcode: "NXDOMAIN", AA: true, RA: true, Ns: []string{soaRev}}},
		{"reverse apex SOA", insider, question("0.1.10.in-addr.arpa.", dns.TypeSOA), summary{
			Rcode: "NOERROR", AA: true, RA: true,
			Answer: []string{"0.1.10.in-addr.arpa. 60 IN SOA kiln.lab.example. hostmaster.lab.example. 7 3600 600 86400 30"}}},
		{"outsider gets authoritative answers", outsider, question("node1.lab.example.", dns.TypeA), summary{
			Rcode: "NOERROR", AA: true,
			Answer: []string{"node1.lab.example. 60 IN A 10.1.0.10"}}},
		{"outsider gets authoritative NXDOMAIN", outsider, question("nope.lab.example.", dns.TypeA), summary{
			Rcode: "NXDOMAIN", AA: true, Ns: []string{soaLab}}},
		{"outsider refused forwarding", outsider, question("www.upstream.test.", dns.TypeA), summary{
			Rcode: "REFUSED"}},
		{"outsider refused reverse outside zones", outsider, question("7.100.51.198.in-addr.arpa.", dns.TypePTR), summary{
			Rcode: "REFUSED"}},
		{"insider forwarded", insider, question("www.upstream.test.", dns.TypeA), summary{
			Rcode: "NOERROR", RA: true,
			Answer: []string{"www.upstream.test. 300 IN A 198.51.100.7"}}},
		{"insider forwarded NXDOMAIN", insider, question("missing.upstream.test.", dns.TypeA), summary{
			Rcode: "NXDOMAIN", RA: true,
			Ns: []string{"upstream.test. 3600 IN SOA ns.upstream.test. h.upstream.test. 1 2 3 4 20"}}},
		{"CHAOS refused", insider, func() *dns.Msg {
			m := question("version.bind.", dns.TypeTXT)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}(), summary{Rcode: "REFUSED"}},
		{"AXFR refused", insider, question("lab.example.", dns.TypeAXFR), summary{Rcode: "REFUSED"}},
		{"two questions", insider, func() *dns.Msg {
			m := question("node1.lab.example.", dns.TypeA)
			m.Question = append(m.Question, m.Question[0])
			return m
		}(), summary{Rcode: "FORMERR"}},
		{"no question", insider, &dns.Msg{}, summary{Rcode: "FORMERR"}},
		{"notify not implemented", insider, func() *dns.Msg {
			m := question("lab.example.", dns.TypeSOA)
			m.Opcode = dns.OpcodeNotify
			return m
		}(), summary{Rcode: "NOTIMP"}},
		{"EDNS version 1", insider, func() *dns.Msg {
			m := question("node1.lab.example.", dns.TypeA)
			m.SetEdns0(1232, false)
			m.IsEdns0().SetVersion(1)
			return m
		}(), summary{Rcode: "BADSIG"}}, // BADVERS and BADSIG share code 16
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := h.Respond(tc.client, false, tc.q)
			if got == nil {
				t.Fatalf("Respond(%v) = nil, want an answer", tc.q.Question)
			}
			if got.Id != tc.q.Id {
				t.Errorf("Respond ID = %d, want %d", got.Id, tc.q.Id)
			}
			if _, err := got.Pack(); err != nil {
				t.Errorf("packing answer: %v", err)
			}
			if diff := cmp.Diff(tc.want, summarize(got)); diff != "" {
				t.Errorf("Respond(%s, %v) mismatch (-want +got):\n%s", tc.client, tc.q.Question, diff)
			}
		})
	}
}

func TestRespondDropsResponses(t *testing.T) {
	h := newTestHandler(t, nil, nil)
	m := question("node1.lab.example.", dns.TypeA)
	m.Response = true
	if got := h.Respond(insider, false, m); got != nil {
		t.Errorf("Respond(response message) = %v, want nil", got)
	}
}

func TestRespondNoUpstream(t *testing.T) {
	h := newTestHandler(t, nil, nil)
	got := summarize(h.Respond(insider, false, question("www.upstream.test.", dns.TypeA)))
	if diff := cmp.Diff(summary{Rcode: "REFUSED"}, got); diff != "" {
		t.Errorf("Respond without upstream mismatch (-want +got):\n%s", diff)
	}
}

func TestRespondUpstreamFailure(t *testing.T) {
	h := newTestHandler(t, &fakeUpstream{err: errors.New("i/o timeout")}, nil)
	got := summarize(h.Respond(insider, false, question("www.upstream.test.", dns.TypeA)))
	if diff := cmp.Diff(summary{Rcode: "SERVFAIL", RA: true}, got); diff != "" {
		t.Errorf("Respond with failing upstream mismatch (-want +got):\n%s", diff)
	}
}

func TestRespondUpstreamWrongQuestion(t *testing.T) {
	h := newTestHandler(t, &fakeUpstream{answer: func(q *dns.Msg) *dns.Msg {
		r := upstreamAnswer(q)
		r.Question[0].Name = "evil.test."
		return r
	}}, nil)
	if got := h.Respond(insider, false, question("www.upstream.test.", dns.TypeA)); got.Rcode != dns.RcodeServerFailure {
		t.Errorf("Respond with mismatched upstream answer rcode = %s, want SERVFAIL", dns.RcodeToString[got.Rcode])
	}
}

func TestTruncation(t *testing.T) {
	h := newTestHandler(t, &fakeUpstream{answer: upstreamAnswer}, nil)
	for _, tc := range []struct {
		name    string
		tcp     bool
		edns    uint16
		wantTC  bool
		maxSize int
	}{
		{"UDP no EDNS", false, 0, true, 512},
		{"UDP EDNS 1232", false, 1232, true, 1232},
		{"UDP EDNS 4096 capped", false, 4096, true, 1232},
		{"TCP", true, 0, false, 65535},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := question("big.upstream.test.", dns.TypeTXT)
			if tc.edns != 0 {
				q.SetEdns0(tc.edns, false)
			}
			got := h.Respond(insider, tc.tcp, q)
			b, err := got.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if got.Truncated != tc.wantTC || len(b) > tc.maxSize {
				t.Errorf("Respond(big TXT, %s) = TC %v, %d bytes, want TC %v, <= %d bytes", tc.name, got.Truncated, len(b), tc.wantTC, tc.maxSize)
			}
			if !tc.wantTC && len(got.Answer) != 20 {
				t.Errorf("Respond(big TXT, %s) has %d answers, want 20", tc.name, len(got.Answer))
			}
		})
	}
}

func TestCache(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	up := &fakeUpstream{answer: upstreamAnswer}
	h := newTestHandler(t, up, clock)
	ask := func(name string) *dns.Msg {
		return h.Respond(insider, false, question(name, dns.TypeA))
	}

	ask("www.upstream.test.")
	now = now.Add(100 * time.Second)
	got := ask("WWW.upstream.test.")
	if up.count() != 1 {
		t.Errorf("upstream asked %d times after a cached repeat, want 1", up.count())
	}
	if ttl := got.Answer[0].Header().Ttl; ttl != 200 {
		t.Errorf("cached answer TTL = %d, want 200 (300 minus 100 s in cache)", ttl)
	}
	now = now.Add(201 * time.Second)
	ask("www.upstream.test.")
	if up.count() != 2 {
		t.Errorf("upstream asked %d times after TTL expiry, want 2", up.count())
	}

	// Negative answers are cached for min(SOA TTL, SOA minimum) = 20 s.
	ask("gone.upstream.test.")
	now = now.Add(19 * time.Second)
	ask("gone.upstream.test.")
	if up.count() != 3 {
		t.Errorf("upstream asked %d times for a cached NXDOMAIN, want 3", up.count())
	}
	now = now.Add(2 * time.Second)
	ask("gone.upstream.test.")
	if up.count() != 4 {
		t.Errorf("upstream asked %d times after negative TTL expiry, want 4", up.count())
	}
}

func TestCacheBounded(t *testing.T) {
	c := newCache(3, time.Hour, time.Now)
	for i := 0; i < 10; i++ {
		m := upstreamAnswer(question(fmt.Sprintf("n%d.upstream.test.", i), dns.TypeA))
		c.put(fmt.Sprintf("k%d", i), m)
	}
	if c.len() != 3 {
		t.Errorf("cache holds %d entries, want 3", c.len())
	}
	if c.get("k9") == nil || c.get("k0") != nil {
		t.Errorf("cache kept the wrong entries: k9 present %v, k0 present %v; want newest kept", c.get("k9") != nil, c.get("k0") != nil)
	}
}

func TestTTLFor(t *testing.T) {
	mk := func(rcode int, rrs ...string) *dns.Msg {
		m := new(dns.Msg)
		m.Rcode = rcode
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatal(err)
			}
			if rr.Header().Rrtype == dns.TypeSOA {
				m.Ns = append(m.Ns, rr)
			} else {
				m.Answer = append(m.Answer, rr)
			}
		}
		return m
	}
	for _, tc := range []struct {
		name string
		m    *dns.Msg
		want time.Duration
	}{
		{"min of answers", mk(dns.RcodeSuccess, "a.test. 30 IN A 192.0.2.1", "a.test. 10 IN A 192.0.2.2"), 10 * time.Second},
		{"nxdomain soa minimum", mk(dns.RcodeNameError, "test. 300 IN SOA ns. h. 1 2 3 4 60"), 60 * time.Second},
		{"nodata soa ttl", mk(dns.RcodeSuccess, "test. 5 IN SOA ns. h. 1 2 3 4 60"), 5 * time.Second},
		{"nxdomain without soa", mk(dns.RcodeNameError), 0},
		{"servfail", mk(dns.RcodeServerFailure, "a.test. 30 IN A 192.0.2.1"), 0},
		{"truncated", func() *dns.Msg { m := mk(dns.RcodeSuccess, "a.test. 30 IN A 192.0.2.1"); m.Truncated = true; return m }(), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ttlFor(tc.m); got != tc.want {
				t.Errorf("ttlFor(%s) = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}

// FuzzDNSHandle feeds arbitrary packed messages to the handler: it must never
// panic, answers must pack, keep the ID and fit the transport.
func FuzzDNSHandle(f *testing.F) {
	for _, q := range []*dns.Msg{
		question("node1.lab.example.", dns.TypeA),
		question("web.lab.example.", dns.TypeAAAA),
		question("10.0.1.10.in-addr.arpa.", dns.TypePTR),
		question("big.upstream.test.", dns.TypeTXT),
		question("lab.example.", dns.TypeANY),
	} {
		b, _ := q.Pack()
		f.Add(b, false, uint8(0))
		q.SetEdns0(4096, true)
		b, _ = q.Pack()
		f.Add(b, true, uint8(1))
	}
	h := newTestHandler(f, &fakeUpstream{answer: upstreamAnswer}, nil)
	h.log = slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, data []byte, tcp bool, who uint8) {
		m := new(dns.Msg)
		if err := m.Unpack(data); err != nil {
			return
		}
		client := insider
		if who%2 == 1 {
			client = outsider
		}
		resp := h.Respond(client, tcp, m)
		if resp == nil {
			if !m.Response {
				t.Fatalf("Respond dropped a query: %v", m)
			}
			return
		}
		b, err := resp.Pack()
		if err != nil {
			t.Fatalf("packing answer to %v: %v", m.Question, err)
		}
		if resp.Id != m.Id || !resp.Response {
			t.Fatalf("answer ID %d response %v, want ID %d and QR set", resp.Id, resp.Response, m.Id)
		}
		limit := dns.MaxMsgSize
		if !tcp {
			limit = 1232
			if m.IsEdns0() == nil {
				limit = dns.MinMsgSize
			}
		}
		if len(b) > limit {
			t.Fatalf("answer is %d bytes, want <= %d", len(b), limit)
		}
		if resp.Authoritative && resp.Rcode == dns.RcodeRefused {
			t.Fatalf("REFUSED answer carries AA")
		}
	})
}
