package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/services/api/wire"
	"kiln.dev/kiln/services/store"
)

func TestHostLifecycle(t *testing.T) {
	ts := newTestServer(t)
	a := ts.admin()
	in := wire.HostInput{Name: "PC-01", MACs: []string{"52-54-00-00-00-01"}, BootProfile: "vet", IPv4: "10.0.0.11",
		ExpectedSpec: "expect:\n  - fact: cpu.threads\n    min: 8\n", Role: "worker", Kernel: "custom/vmlinuz", Cmdline: "console=ttyS0"}
	r := ts.do(req{method: "POST", path: "/api/v1/hosts", as: a, body: in})
	if r.code != http.StatusCreated || r.header.Get("Location") != "/api/v1/hosts/pc-01" {
		t.Fatalf("POST hosts = %d %s (Location %q)", r.code, r.body, r.header.Get("Location"))
	}
	var got wire.Host
	json.Unmarshal(r.body, &got)
	want := wire.HostInput{Name: "pc-01", MACs: []string{"52:54:00:00:00:01"}, BootProfile: "vet", IPv4: "10.0.0.11",
		ExpectedSpec: "expect:\n  - fact: cpu.threads\n    min: 8\n", Role: "worker", Kernel: "custom/vmlinuz", Cmdline: "console=ttyS0"}
	if diff := cmp.Diff(want, got.HostInput); diff != "" {
		t.Errorf("created host (-want +got):\n%s", diff)
	}

	// Live state: a lease and boot events show up in the list.
	ctx := context.Background()
	ts.db.PutLease(ctx, store.Lease{IP: netip.MustParseAddr("10.0.0.11"), Subnet: "lab", MAC: "52:54:00:00:00:01", State: store.LeaseBound, Expires: time.Now().Add(time.Hour)})
	ts.db.AddBootEvent(ctx, store.BootEvent{MAC: "52:54:00:00:00:01", Host: "pc-01", Kind: store.EventDHCPAck, Detail: "10.0.0.11"})
	ts.db.AddBootEvent(ctx, store.BootEvent{MAC: "52:54:00:00:00:01", Host: "pc-01", Kind: store.EventScript})
	r = ts.do(req{method: "GET", path: "/api/v1/hosts", as: a})
	var list []wire.Host
	json.Unmarshal(r.body, &list)
	if len(list) != 1 || list[0].Lease == nil || list[0].Lease.IP != "10.0.0.11" || list[0].LastEvent == nil || list[0].LastEvent.Kind != store.EventScript {
		t.Errorf("GET hosts = %s, want pc-01 with its lease and the script event", r.body)
	}
	r = ts.do(req{method: "GET", path: "/api/v1/hosts/pc-01/events", as: a})
	var evs []wire.BootEvent
	json.Unmarshal(r.body, &evs)
	if len(evs) != 2 || evs[0].Kind != store.EventScript || evs[1].Kind != store.EventDHCPAck {
		t.Errorf("GET host events = %s, want script then dhcp_ack", r.body)
	}

	// Update (rename), dry run, delete.
	in.Name, in.MACs = "pc-02", []string{"52:54:00:00:00:01", "52:54:00:00:00:02"}
	if r := ts.do(req{method: "PUT", path: "/api/v1/hosts/pc-01?dry_run=1", as: a, body: in}); r.code != http.StatusNoContent {
		t.Errorf("PUT dry run = %d %s", r.code, r.body)
	}
	if r := ts.do(req{method: "GET", path: "/api/v1/hosts/pc-02", as: a}); r.code != http.StatusNotFound {
		t.Errorf("dry run stored the rename: GET pc-02 = %d", r.code)
	}
	if r := ts.do(req{method: "PUT", path: "/api/v1/hosts/pc-01", as: a, body: in}); r.code != http.StatusOK {
		t.Errorf("PUT = %d %s", r.code, r.body)
	}
	if r := ts.do(req{method: "PUT", path: "/api/v1/hosts/nope", as: a, body: in}); r.code != http.StatusNotFound || r.errBody(t).Code != CodeNotFound {
		t.Errorf("PUT unknown = %d %s", r.code, r.body)
	}
	if r := ts.do(req{method: "DELETE", path: "/api/v1/hosts/pc-02", as: a}); r.code != http.StatusNoContent {
		t.Errorf("DELETE = %d %s", r.code, r.body)
	}
	if r := ts.do(req{method: "GET", path: "/api/v1/hosts/pc-02", as: a}); r.code != http.StatusNotFound {
		t.Errorf("GET after delete = %d", r.code)
	}
}

func TestHostBadInput(t *testing.T) {
	ts := newTestServer(t)
	a := ts.admin()
	ctx := context.Background()
	if _, err := ts.db.CreateHost(ctx, store.Host{Name: "pc-07", MACs: []string{"52:54:00:00:00:07"}}); err != nil {
		t.Fatal(err)
	}
	big := `{"name":"pc-09","macs":["52:54:00:00:00:09"],"expected_spec":"` + strings.Repeat("x", DefaultBodyLimit) + `"}`
	for _, tc := range []struct {
		name      string
		path      string
		body      any
		ct        string
		wantCode  int
		wantErr   string
		wantField string
	}{
		{"malformed JSON", "/api/v1/hosts", `{"name": "pc-01",`, "", 400, CodeBadRequest, ""},
		{"not an object", "/api/v1/hosts", `["pc-01"]`, "", 400, CodeInvalid, ""},
		{"two objects", "/api/v1/hosts", `{"name":"pc-01","macs":[]} {}`, "", 400, CodeBadRequest, ""},
		{"empty body", "/api/v1/hosts", ``, "", 400, CodeBadRequest, ""},
		{"unknown field", "/api/v1/hosts", `{"name":"pc-01","macs":[],"mac":"52:54:00:00:00:01"}`, "", 400, CodeUnknownField, "mac"},
		{"wrong type", "/api/v1/hosts", `{"name":"pc-01","macs":"52:54:00:00:00:01"}`, "", 400, CodeInvalid, "macs"},
		{"form post", "/api/v1/hosts", `name=pc-01`, "application/x-www-form-urlencoded", 415, CodeBadRequest, ""},
		{"missing name", "/api/v1/hosts", wire.HostInput{MACs: []string{"52:54:00:00:00:01"}}, "", 422, CodeInvalid, "name"},
		{"bad MAC", "/api/v1/hosts", wire.HostInput{Name: "pc-01", MACs: []string{"52:54:00:00:00:01", "nope"}}, "", 422, CodeInvalid, "macs[1]"},
		{"duplicate MAC in the host", "/api/v1/hosts", wire.HostInput{Name: "pc-01", MACs: []string{"52:54:00:00:00:01", "52-54-00-00-00-01"}}, "", 422, CodeInvalid, "macs[1]"},
		{"MAC of another host", "/api/v1/hosts", wire.HostInput{Name: "pc-01", MACs: []string{"52:54:00:00:00:07"}}, "", 409, CodeConflict, "macs[0]"},
		{"name taken", "/api/v1/hosts", wire.HostInput{Name: "pc-07", MACs: []string{"52:54:00:00:00:01"}}, "", 409, CodeConflict, "name"},
		{"bad spec YAML", "/api/v1/hosts", wire.HostInput{Name: "pc-01", ExpectedSpec: "cpus: [8\nmemory: 3"}, "", 422, CodeInvalid, "expected_spec"},
		{"spec not a mapping", "/api/v1/hosts", wire.HostInput{Name: "pc-01", ExpectedSpec: "- cpus\n- ram\n"}, "", 422, CodeInvalid, "expected_spec"},
		{"spec not a vetting spec", "/api/v1/hosts", wire.HostInput{Name: "pc-01", ExpectedSpec: "cpus: 8\n"}, "", 422, CodeInvalid, "expected_spec"},
		{"bad address and MAC", "/api/v1/hosts", wire.HostInput{Name: "pc-01", IPv4: "10.0.0.300", MACs: []string{"x"}}, "", 422, CodeInvalid, "ipv4"},
		{"kernel profile without a kernel", "/api/v1/hosts", wire.HostInput{Name: "pc-01", BootProfile: "kernel"}, "", 422, CodeInvalid, "kernel"},
		{"oversized", "/api/v1/hosts", big, "", 413, CodeTooLarge, ""},
		{"bad MAC on update", "/api/v1/hosts/pc-07", wire.HostInput{Name: "pc-07", MACs: []string{"zz"}}, "", 422, CodeInvalid, "macs[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := ts.db.Marks(ctx)
			method := "POST"
			if tc.path != "/api/v1/hosts" {
				method = "PUT"
			}
			r := ts.do(req{method: method, path: tc.path, as: a, body: tc.body, contentType: tc.ct})
			e := r.errBody(t)
			if r.code != tc.wantCode || e.Code != tc.wantErr || e.Field != tc.wantField {
				t.Errorf("%s %s = %d %s/%s %q, want %d %s/%s", method, tc.path, r.code, e.Code, e.Field, e.Message, tc.wantCode, tc.wantErr, tc.wantField)
			}
			if after, _ := ts.db.Marks(ctx); after != before {
				t.Errorf("the store changed (%+v → %+v): something was partially stored", before, after)
			}
		})
	}
	// Several problems at once come back together, for inline form errors
	// (conflicts with other hosts are checked once the values are valid).
	r := ts.do(req{method: "POST", path: "/api/v1/hosts", as: a, body: wire.HostInput{Name: "-bad-", IPv4: "x", MACs: []string{"52:54:00:00:00:07"}, ExpectedSpec: "[1"}})
	e := r.errBody(t)
	var fields []string
	for _, d := range e.Details {
		fields = append(fields, d.Field)
	}
	if diff := cmp.Diff([]string{"ipv4", "name", "expected_spec"}, fields); diff != "" {
		t.Errorf("details of a request with three problems (-want +got):\n%s\n%s", diff, r.body)
	}
	if hs, _ := ts.db.ListHosts(ctx); len(hs) != 1 {
		t.Errorf("hosts after bad input = %d, want 1 (only pc-07)", len(hs))
	}
}

const hallYAML = `hosts:
  - name: pc-01
    macs: [52:54:00:00:01:01]
    boot_profile: vet
  - name: pc-02
    macs: [52:54:00:00:02:01]
`

func TestImportExport(t *testing.T) {
	ts := newTestServer(t)
	a := ts.admin()
	r := ts.do(req{method: "POST", path: "/api/v1/hosts/import", as: a, body: hallYAML, contentType: "application/yaml"})
	if r.code != http.StatusOK || strings.TrimSpace(string(r.body)) != "{\n  \"created\": 2,\n  \"updated\": 0\n}" {
		t.Fatalf("import = %d %s", r.code, r.body)
	}
	// A second file with one bad line stores nothing, and says where.
	bad := "name,macs\npc-03,52:54:00:00:03:01\npc-04,52:54:00:00:01:01\n"
	r = ts.do(req{method: "POST", path: "/api/v1/hosts/import?format=csv", as: a, body: bad, contentType: "text/csv"})
	e := r.errBody(t)
	if r.code != http.StatusConflict || e.Line != 3 || e.Field != "macs[0]" {
		t.Errorf("bad import = %d %s, want 409 on line 3 macs[0]", r.code, r.body)
	}
	if r := ts.do(req{method: "POST", path: "/api/v1/hosts/import", as: a, body: "hosts: [", contentType: "application/yaml"}); r.code != http.StatusBadRequest {
		t.Errorf("unparsable import = %d %s, want 400", r.code, r.body)
	}
	if r := ts.do(req{method: "POST", path: "/api/v1/hosts/import", as: a, body: strings.Repeat("#", ImportBodyLimit+1), contentType: "application/yaml"}); r.code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized import = %d, want 413", r.code)
	}
	if r := ts.do(req{method: "POST", path: "/api/v1/hosts/import?format=xml", as: a, body: "x"}); r.code != http.StatusBadRequest || r.errBody(t).Field != "format" {
		t.Errorf("import ?format=xml = %d %s", r.code, r.body)
	}
	r = ts.do(req{method: "GET", path: "/api/v1/hosts/export?format=csv", as: a})
	if r.code != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") || strings.Count(string(r.body), "\n") != 3 || strings.Contains(string(r.body), "pc-03") {
		t.Errorf("export csv = %d %q", r.code, r.body)
	}
	r = ts.do(req{method: "GET", path: "/api/v1/hosts/export", as: a})
	if !strings.Contains(string(r.body), "- name: pc-01") {
		t.Errorf("export yaml = %q", r.body)
	}
}

func TestLeasesAndBootEvents(t *testing.T) {
	ts := newTestServer(t)
	a := ts.admin()
	ctx := context.Background()
	ts.db.CreateHost(ctx, store.Host{Name: "pc-01", MACs: []string{"52:54:00:00:00:01"}})
	exp := time.Now().Add(time.Hour)
	ts.db.PutLease(ctx, store.Lease{IP: netip.MustParseAddr("10.0.0.20"), Subnet: "lab", MAC: "52:54:00:00:00:01", State: store.LeaseBound, Expires: exp})
	ts.db.PutLease(ctx, store.Lease{IP: netip.MustParseAddr("10.0.0.9"), Subnet: "lab", MAC: "52:54:00:00:00:99", State: store.LeaseReleased, Expires: exp})
	r := ts.do(req{method: "GET", path: "/api/v1/leases", as: a})
	var ls []wire.Lease
	json.Unmarshal(r.body, &ls)
	if len(ls) != 2 || ls[0].IP != "10.0.0.9" || ls[1].Host != "pc-01" || !ls[1].Active || ls[0].Active {
		t.Errorf("GET leases = %s", r.body)
	}
	r = ts.do(req{method: "GET", path: "/api/v1/leases?active=1", as: a})
	json.Unmarshal(r.body, &ls)
	if len(ls) != 1 {
		t.Errorf("GET leases?active=1 = %s, want one", r.body)
	}
	if r := ts.do(req{method: "DELETE", path: "/api/v1/leases/10.0.0.9", as: a}); r.code != http.StatusNoContent {
		t.Errorf("DELETE lease = %d %s", r.code, r.body)
	}
	for _, p := range []string{"/api/v1/leases/10.0.0.9", "/api/v1/leases/nope"} {
		if r := ts.do(req{method: "DELETE", path: p, as: a}); r.code/100 != 4 {
			t.Errorf("DELETE %s = %d, want 4xx", p, r.code)
		}
	}
	for i := range 3 {
		ts.db.AddBootEvent(ctx, store.BootEvent{MAC: "52:54:00:00:00:0" + string(rune('1'+i)), Kind: store.EventTFTP, Detail: "f" + string(rune('a'+i))})
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"fc", "fb", "fa"}},
		{"?limit=1", []string{"fc"}},
		{"?mac=52:54:00:00:00:02", []string{"fb"}},
		{"?after=1", []string{"fb", "fc"}},
	} {
		r := ts.do(req{method: "GET", path: "/api/v1/boot-events" + tc.query, as: a})
		var es []wire.BootEvent
		json.Unmarshal(r.body, &es)
		var got []string
		for _, e := range es {
			got = append(got, e.Detail)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("GET boot-events%s (-want +got):\n%s", tc.query, diff)
		}
	}
	for _, q := range []string{"?limit=0", "?limit=x", "?mac=zz", "?mac=52:54:00:00:00:01&after=1"} {
		if r := ts.do(req{method: "GET", path: "/api/v1/boot-events" + q, as: a}); r.code/100 != 4 {
			t.Errorf("GET boot-events%s = %d, want 4xx", q, r.code)
		}
	}
}

func TestSettings(t *testing.T) {
	ts := newTestServer(t)
	a := ts.admin()
	r := ts.do(req{method: "PUT", path: "/api/v1/settings", as: a, body: map[string]any{"session_hours": 0, "site_name": strings.Repeat("x", 65)}})
	e := r.errBody(t)
	if r.code != http.StatusUnprocessableEntity || len(e.Details) != 2 {
		t.Errorf("bad settings = %d %s, want 422 with two details", r.code, r.body)
	}
	r = ts.do(req{method: "PUT", path: "/api/v1/settings", as: a, body: map[string]any{"site_name": "Hall 3", "login_banner": "ask ops"}})
	var got settingsResponse
	json.Unmarshal(r.body, &got)
	if r.code != http.StatusOK || got.SiteName != "Hall 3" || got.SessionHours != 12 || got.Appliance.Certificate != "self-signed" {
		t.Errorf("PUT settings = %d %s", r.code, r.body)
	}
	r = ts.do(req{method: "GET", path: "/api/v1/info"})
	if !strings.Contains(string(r.body), `"site_name": "Hall 3"`) || !strings.Contains(string(r.body), "ask ops") {
		t.Errorf("GET info = %s", r.body)
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	ts := newTestServer(t)
	a := ts.admin()
	r := ts.do(req{method: "GET", path: "/api/v1/nothing", as: a})
	if r.code != http.StatusNotFound || r.errBody(t).Code != CodeNotFound {
		t.Errorf("GET /api/v1/nothing = %d %s", r.code, r.body)
	}
	r = ts.do(req{method: "PATCH", path: "/api/v1/hosts", as: a, body: "{}"})
	if r.code != http.StatusMethodNotAllowed || r.errBody(t).Code != CodeMethod || r.header.Get("Allow") != "GET, POST" {
		t.Errorf("PATCH /api/v1/hosts = %d %s (Allow %q)", r.code, r.body, r.header.Get("Allow"))
	}
	r = ts.do(req{method: "GET", path: "/"})
	if r.code != http.StatusOK || !strings.Contains(string(r.body), "<html") {
		t.Errorf("GET / (following the redirect) = %d %.60s", r.code, r.body)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("UI Content-Security-Policy = %q", csp)
	}
}
