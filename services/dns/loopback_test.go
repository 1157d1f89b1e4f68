package dns

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeSource is a small in-memory Source.
type fakeSource struct {
	// mu guards version and records.
	mu      sync.Mutex
	version uint64
	records []Record
}

func (f *fakeSource) Version(context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.version, nil
}

func (f *fakeSource) Records(context.Context) ([]Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Record(nil), f.records...), nil
}

func (f *fakeSource) set(r []Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records = r
	f.version++
}

// startUpstream runs a miekg/dns server on loopback answering upstreamAnswer.
func startUpstream(t *testing.T) string {
	t.Helper()
	pc, ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := upstreamAnswer(r)
		if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
			size := dns.MinMsgSize
			if o := r.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	})
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return pc.LocalAddr().String()
}

// startServer runs the DNS service on loopback and returns its port.
func startServer(t *testing.T, src Source, upstream string) string {
	t.Helper()
	return startServerAt(t, src, upstream, "127.0.0.1:0", netip.MustParsePrefix("127.0.0.1/32"))
}

// startServerAt runs the DNS service on listen, forwarding only for allow,
// and returns its port.
func startServerAt(t *testing.T, src Source, upstream, listen string, allow netip.Prefix) string {
	t.Helper()
	o := Options{
		Listen:         listen,
		Domain:         "lab.example",
		Subnets:        testSpec.Subnets,
		NSName:         "kiln",
		NSAddrs:        testSpec.NSAddrs,
		Upstreams:      []string{upstream},
		AllowRecursion: []netip.Prefix{allow},
		PollInterval:   50 * time.Millisecond,
	}
	return startServerOpts(t, src, o)
}

// startServerOpts runs the DNS service with o and returns its port.
func startServerOpts(t *testing.T, src Source, o Options) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, o, src, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	pc, ln, err := Listen(o.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc, ln, func() { close(ready) }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return within 5s of cancel")
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("DNS server not ready within 5s")
	}
	_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
	return port
}

func dig(t *testing.T, port string, args ...string) string {
	t.Helper()
	return digVia(t, nil, "127.0.0.1", port, args...)
}

// digVia runs dig against server:port, prefixed by wrap (e.g. ip netns exec NS).
func digVia(t *testing.T, wrap []string, server, port string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	all := append([]string{"@" + server, "-p", port, "+time=2", "+tries=1", "+nocmd", "+noall", "+comments", "+answer", "+authority"}, args...)
	cmd := append(append(append([]string(nil), wrap...), "dig"), all...)
	out, err := exec.CommandContext(ctx, cmd[0], cmd[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(all, " "), err, out)
	}
	return string(out)
}

var (
	statusRE = regexp.MustCompile(`status: (\w+)`)
	flagsRE  = regexp.MustCompile(`flags: ([a-z ]+);`)
)

type digResult struct {
	status string
	flags  map[string]bool
	out    string
}

func parseDig(out string) digResult {
	r := digResult{flags: map[string]bool{}, out: out}
	if m := statusRE.FindStringSubmatch(out); m != nil {
		r.status = m[1]
	}
	if m := flagsRE.FindStringSubmatch(out); m != nil {
		for _, f := range strings.Fields(m[1]) {
			r.flags[f] = true
		}
	}
	return r
}

// answerLine matches "name. TTL IN TYPE data" with any whitespace.
func hasRR(out, name, typ, data string) bool {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s+\d+\s+IN\s+` + typ + `\s+` + regexp.QuoteMeta(data) + `\s*$`)
	return re.MatchString(out)
}

func TestDigLoopback(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig not installed (apt-get install bind9-dnsutils)")
	}
	src := &fakeSource{version: 1, records: testRecords}
	port := startServer(t, src, startUpstream(t))

	for _, tc := range []struct {
		name       string
		args       []string
		wantStatus string
		wantFlags  []string
		noFlags    []string
		wantRR     [][3]string // name, type, data
	}{
		{"A udp", []string{"node1.lab.example", "A"}, "NOERROR", []string{"aa", "ra"}, nil,
			[][3]string{{"node1.lab.example.", "A", "10.1.0.10"}}},
		{"A tcp", []string{"+tcp", "node2.lab.example", "A"}, "NOERROR", []string{"aa"}, nil,
			[][3]string{{"node2.lab.example.", "A", "10.2.3.20"}}},
		{"PTR", []string{"-x", "10.1.0.10"}, "NOERROR", []string{"aa"}, nil,
			[][3]string{{"10.0.1.10.in-addr.arpa.", "PTR", "node1.lab.example."}}},
		{"CNAME", []string{"web.lab.example", "A"}, "NOERROR", []string{"aa"}, nil,
			[][3]string{{"web.lab.example.", "CNAME", "node1.lab.example."}, {"node1.lab.example.", "A", "10.1.0.10"}}},
		{"NXDOMAIN", []string{"nope.lab.example", "A"}, "NXDOMAIN", []string{"aa"}, nil, nil},
		{"NODATA", []string{"node1.lab.example", "AAAA"}, "NOERROR", []string{"aa"}, nil, nil},
		{"forwarded", []string{"www.upstream.test", "A"}, "NOERROR", []string{"ra"}, []string{"aa"},
			[][3]string{{"www.upstream.test.", "A", "198.51.100.7"}}},
		{"forwarded refused for outsider", []string{"-b", "127.0.0.2", "www.upstream.test", "A"}, "REFUSED", nil, []string{"aa", "ra"}, nil},
		{"authoritative for outsider", []string{"-b", "127.0.0.2", "node1.lab.example", "A"}, "NOERROR", []string{"aa"}, []string{"ra"},
			[][3]string{{"node1.lab.example.", "A", "10.1.0.10"}}},
		{"truncated over udp", []string{"+ignore", "+noedns", "big.upstream.test", "TXT"}, "NOERROR", []string{"tc"}, nil, nil},
		{"tcp retry after truncation", []string{"+noedns", "big.upstream.test", "TXT"}, "NOERROR", nil, []string{"tc"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseDig(dig(t, port, tc.args...))
			if testing.Verbose() {
				t.Log(got.out)
			}
			if got.status != tc.wantStatus {
				t.Errorf("dig %v status = %q, want %q\n%s", tc.args, got.status, tc.wantStatus, got.out)
			}
			for _, f := range tc.wantFlags {
				if !got.flags[f] {
					t.Errorf("dig %v flags = %v, want %q set\n%s", tc.args, got.flags, f, got.out)
				}
			}
			for _, f := range tc.noFlags {
				if got.flags[f] {
					t.Errorf("dig %v flags = %v, want %q clear\n%s", tc.args, got.flags, f, got.out)
				}
			}
			if (got.status == "NXDOMAIN" || tc.name == "NODATA") && !regexp.MustCompile(`(?m)^lab\.example\.\s+30\s+IN\s+SOA\s`).MatchString(got.out) {
				t.Errorf("dig %v: negative answer lacks the SOA with the negative TTL\n%s", tc.args, got.out)
			}
			for _, rr := range tc.wantRR {
				if !hasRR(got.out, rr[0], rr[1], rr[2]) {
					t.Errorf("dig %v answer lacks %v\n%s", tc.args, rr, got.out)
				}
			}
		})
	}

	t.Run("big answer complete over tcp", func(t *testing.T) {
		out := dig(t, port, "+noedns", "big.upstream.test", "TXT")
		if n := strings.Count(out, "\tTXT\t"); n != 20 {
			t.Errorf("dig big TXT after TCP retry has %d TXT records, want 20\n%s", n, out)
		}
	})

	t.Run("zone rebuilt on change", func(t *testing.T) {
		src.set(append(append([]Record(nil), testRecords...), Record{Name: "fresh", Addr: netip.MustParseAddr("10.1.0.99")}))
		deadline := time.Now().Add(5 * time.Second)
		for {
			out := dig(t, port, "fresh.lab.example", "A")
			if hasRR(out, "fresh.lab.example.", "A", "10.1.0.99") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("new host not served within 5s of a store change:\n%s", out)
			}
			time.Sleep(50 * time.Millisecond)
		}
		soa := dig(t, port, "lab.example", "SOA")
		if hasRR(soa, "lab.example.", "SOA", "kiln.lab.example. hostmaster.lab.example. 7 3600 600 86400 30") {
			t.Errorf("SOA serial did not move after rebuild:\n%s", soa)
		}
	})
}
