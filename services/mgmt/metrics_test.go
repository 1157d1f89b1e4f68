package mgmt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"

	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/ota/slots"
	"kiln.dev/kiln/services/api"
	kdns "kiln.dev/kiln/services/dns"
	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/metrics/metricstest"
	"kiln.dev/kiln/services/store"
)

// readToken makes a read-role user with an API token, as an operator does
// for Prometheus, and returns the token's secret.
func readToken(t *testing.T, stateDir string) string {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Path(stateDir))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, err := db.CreateUser(ctx, store.User{Name: "prometheus", Role: store.RoleRead, PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	secret := api.TokenPrefix + "metricsreadtokenmetricsreadtoken"
	sum := sha256.Sum256([]byte(secret))
	if _, err := db.CreateToken(ctx, store.APIToken{UserID: u.ID, Name: "scrape", Scope: store.RoleRead,
		SecretHash: hex.EncodeToString(sum[:]), Prefix: secret[:9]}); err != nil {
		t.Fatal(err)
	}
	return secret
}

// startDNS runs the real DNS service on loopback with its registry on the
// metrics socket the supervisor's "kiln service dns" would serve, and
// returns its address.
func startDNS(t *testing.T, runDir string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reg := metrics.New()
	sock := metrics.SocketPath(runDir, "dns")
	go metrics.ServeUnix(ctx, reg, sock, slog.New(slog.DiscardHandler))
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		} else if i == 500 {
			t.Fatalf("metrics socket %s: %v", sock, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	o := kdns.Options{Listen: "127.0.0.1:0", Domain: "lab.example", Metrics: reg}
	s, err := kdns.New(ctx, o, emptySource{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	pc, ln, err := kdns.Listen(o.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go s.Serve(ctx, pc, ln, func() { close(ready) })
	<-ready
	return pc.LocalAddr().String()
}

type emptySource struct{}

func (emptySource) Version(context.Context) (uint64, error)        { return 1, nil }
func (emptySource) Records(context.Context) ([]kdns.Record, error) { return nil, nil }

// checkMetrics is part of TestRun: GET /metrics of the running mgmt
// service, refused without credentials, parsed with Prometheus' parser,
// with mgmt's families and the DNS service's, which move after a query.
func checkMetrics(t *testing.T, hc *http.Client, base, stateDir, runDir string) {
	t.Helper()
	token := readToken(t, stateDir)
	dnsAddr := startDNS(t, runDir)
	scrape := func(auth string) (int, metricstest.Families) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET /metrics: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, nil
		}
		if ct := resp.Header.Get("Content-Type"); ct != metrics.ContentType {
			t.Errorf("GET /metrics Content-Type = %q, want %q", ct, metrics.ContentType)
		}
		return resp.StatusCode, metricstest.Parse(t, b)
	}
	if code, _ := scrape(""); code != http.StatusUnauthorized {
		t.Errorf("GET /metrics without credentials = %d, want 401", code)
	}
	if code, _ := scrape(api.TokenPrefix + "wrong"); code != http.StatusUnauthorized {
		t.Errorf("GET /metrics with an unknown token = %d, want 401", code)
	}
	code, before := scrape(token)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics with a read token = %d, want 200", code)
	}
	for _, fam := range []string{
		"kiln_build_info", "kiln_supervisor_ready", "kiln_service_restarts_total", "kiln_service_state",
		"kiln_data_size_bytes", "kiln_data_avail_bytes", "kiln_data_files", "kiln_data_files_free", "kiln_ota_available",
		"kiln_dns_cache_hits_total", "kiln_dns_cache_entries", metrics.SourceUpFamily,
	} {
		if before[fam] == nil {
			t.Errorf("GET /metrics lacks %s", fam)
		}
	}
	if got := before.Value("kiln_service_state", "service", "dns", "state", "backoff"); got != 1 {
		t.Errorf("kiln_service_state{dns,backoff} = %v, want 1", got)
	}
	if got := before.Value("kiln_service_state", "service", "dns", "state", "ready"); got != 0 {
		t.Errorf("kiln_service_state{dns,ready} = %v, want 0", got)
	}
	if got := before.Value("kiln_service_restarts_total", "service", "dns"); got != 2 {
		t.Errorf("kiln_service_restarts_total{dns} = %v, want 2", got)
	}
	if got := before.Value("kiln_data_size_bytes"); !(got > 0) {
		t.Errorf("kiln_data_size_bytes = %v, want > 0", got)
	}
	if got := before.Value("kiln_ota_available"); got != 0 {
		t.Errorf("kiln_ota_available = %v outside an image, want 0", got)
	}
	if got := before.Value(metrics.SourceUpFamily, "source", "dns"); got != 1 {
		t.Errorf("kiln_metrics_source_up{dns} = %v, want 1", got)
	}

	c := &dns.Client{Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion("nope.lab.example.", dns.TypeAAAA)
	if _, _, err := c.Exchange(m, dnsAddr); err != nil {
		t.Fatalf("DNS query: %v", err)
	}
	_, after := scrape(token)
	q := func(fams metricstest.Families) float64 {
		return fams.Value("kiln_dns_queries_total", "proto", "udp", "type", "AAAA", "rcode", "NXDOMAIN")
	}
	// The query is the first of its kind: no series before, 1 after.
	if b, a := q(before), q(after); !math.IsNaN(b) || a != 1 {
		t.Errorf("kiln_dns_queries_total{udp,AAAA,NXDOMAIN} went from %v to %v after one query, want from no series to 1", b, a)
	}
}

type fakeSupervisor struct{ st supervisor.Status }

func (f fakeSupervisor) Status(context.Context) (supervisor.Status, error) { return f.st, nil }

type fakeSlots struct{ st slots.Status }

func (f fakeSlots) Status(context.Context) (slots.Status, error) { return f.st, nil }

type fakeVet []store.VetRunCount

func (f fakeVet) CountVetRuns(context.Context) ([]store.VetRunCount, error) { return f, nil }

// TestApplianceMetrics: an appliance on trial in slot b after an update
// from slot a, with one failed generation.
func TestApplianceMetrics(t *testing.T) {
	reg := metrics.New()
	applianceMetrics{
		Version: "1.4.0",
		Supervisor: fakeSupervisor{supervisor.Status{Ready: false, Services: []supervisor.ServiceStatus{
			{Name: "mgmt", State: supervisor.StateReady},
			{Name: "dhcp", State: supervisor.StateCrashLoop, Restarts: 7},
		}}},
		Slots: fakeSlots{slots.Status{Running: "b", Failed: []slots.Failure{{Generation: 3}}, Slots: []slots.Slot{
			{Name: "a", State: slots.StateGood, Version: "1.3.0", Generation: 4, Next: false},
			{Name: "b", State: slots.StateTrying, Version: "1.4.0", Generation: 5, Running: true, Next: true},
		}}},
		Vetting: fakeVet{{State: "done", Verdict: "PASS", Runs: 3}, {State: "running", Runs: 1}},
		DataDir: t.TempDir(),
	}.register(reg)
	fams := metricstest.Scrape(t, reg)
	for _, c := range []struct {
		fam  string
		kv   []string
		want float64
	}{
		{"kiln_build_info", []string{"version", "1.4.0", "goversion", runtime.Version()}, 1},
		{"kiln_supervisor_ready", nil, 0},
		{"kiln_service_restarts_total", []string{"service", "dhcp"}, 7},
		{"kiln_service_state", []string{"service", "dhcp", "state", "crash-loop"}, 1},
		{"kiln_service_state", []string{"service", "dhcp", "state", "ready"}, 0},
		{"kiln_service_state", []string{"service", "mgmt", "state", "ready"}, 1},
		{"kiln_ota_available", nil, 1},
		{"kiln_ota_slot_running", []string{"slot", "b"}, 1},
		{"kiln_ota_slot_running", []string{"slot", "a"}, 0},
		{"kiln_ota_slot_next", []string{"slot", "b"}, 1},
		{"kiln_ota_slot_generation", []string{"slot", "a"}, 4},
		{"kiln_ota_slot_committed", []string{"slot", "a"}, 1},
		{"kiln_ota_slot_committed", []string{"slot", "b"}, 0},
		{"kiln_ota_slot_info", []string{"slot", "b", "version", "1.4.0", "generation", "5"}, 1},
		{"kiln_ota_slot_state", []string{"slot", "b", "state", "trying"}, 1},
		{"kiln_ota_slot_state", []string{"slot", "b", "state", "good"}, 0},
		{"kiln_ota_failed_generations", nil, 1},
		{"kiln_vetting_runs", []string{"state", "done", "verdict", "PASS"}, 3},
		{"kiln_vetting_runs", []string{"state", "running", "verdict", ""}, 1},
	} {
		if got := fams.Value(c.fam, c.kv...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.fam, c.kv, got, c.want)
		}
	}
	if got := len(fams["kiln_service_state"].GetMetric()); got != 2*len(serviceStates) {
		t.Errorf("kiln_service_state has %d series, want one per service and state (%d)", got, 2*len(serviceStates))
	}
	if avail, size := fams.Value("kiln_data_avail_bytes"), fams.Value("kiln_data_size_bytes"); !(avail > 0 && avail <= size) {
		t.Errorf("data avail %v of size %v, want 0 < avail <= size", avail, size)
	}
}
