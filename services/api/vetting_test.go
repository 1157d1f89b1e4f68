package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"kiln.dev/kiln/services/api/wire"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/orchestrator"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/verdict"
)

func withVetting(o *Options) {
	o.Vetting = orchestrator.New(o.Store, config.Vetting{}, o.StateDir, o.Logger)
}

// TestVettingRoutes: start needs a known host and, to wipe, an admin; the
// stream sends run changes and agent events and resumes after an id; a run
// that is not held has no SSH key to hand out.
func TestVettingRoutes(t *testing.T) {
	ts := newTestServer(t, withVetting)
	ctx := context.Background()
	if _, err := ts.db.CreateHost(ctx, store.Host{Name: "pc-01", MACs: []string{"52:54:00:00:00:01"}, BootProfile: store.BootVet}); err != nil {
		t.Fatal(err)
	}
	a := ts.admin()
	writer := ts.userWithToken("op", store.RoleWrite, store.RoleWrite)
	if r := ts.do(req{method: "POST", path: "/api/v1/vetting/runs", token: writer, body: map[string]any{"host": "pc-01", "wipe": true, "confirm_wipe": "pc-01"}}); r.code != http.StatusForbidden || r.errBody(t).Field != "wipe" {
		t.Errorf("wipe run by a writer = %d %s, want 403 naming wipe", r.code, r.body)
	}
	if r := ts.do(req{method: "POST", path: "/api/v1/vetting/runs", token: writer, body: map[string]any{"host": "pc-01", "profile": "fast"}}); r.code != http.StatusUnprocessableEntity || r.errBody(t).Field != "profile" {
		t.Errorf("bad profile = %d %s, want 422 naming profile", r.code, r.body)
	}
	if r := ts.do(req{method: "POST", path: "/api/v1/vetting/runs", token: writer, body: map[string]any{"host": "pc-99"}}); r.code != http.StatusNotFound {
		t.Errorf("unknown host = %d %s, want 404", r.code, r.body)
	}
	ch := ts.openStream("/api/v1/vetting/stream", a, "")
	next(t, ch, "hello")
	r := ts.do(req{method: "POST", path: "/api/v1/vetting/runs", token: writer, body: map[string]any{"host": "pc-01", "hold": true}})
	if r.code != http.StatusCreated {
		t.Fatalf("start = %d %s", r.code, r.body)
	}
	var v orchestrator.View
	json.Unmarshal(r.body, &v)
	if v.State != "queued" || !v.Hold || v.ReportURL != "/api/v1/vetting/runs/"+v.ID+"/report.html" {
		t.Errorf("started run = %+v", v)
	}
	if r := ts.do(req{method: "POST", path: "/api/v1/vetting/runs", token: writer, body: map[string]any{"host": "pc-01"}}); r.code != http.StatusConflict {
		t.Errorf("second run of the host = %d, want 409", r.code)
	}
	first := next(t, ch, "run")
	if !strings.Contains(first.data, `"state":"queued"`) {
		t.Errorf("run event = %s", first.data)
	}
	// The agent starts and reports progress.
	orch := orchestrator.New(ts.db, config.Vetting{}, ts.stateDir, nil)
	if _, err := orch.Hello(ctx, v.ID, protocol.Hello{Source: netip.MustParseAddr("10.9.0.50")}); err != nil {
		t.Fatal(err)
	}
	next(t, ch, "run")
	if err := orch.Record(ctx, v.ID, &protocol.Events{Events: []protocol.Event{{Seq: 1, Kind: protocol.EventStageStart, Stage: "cpu"},
		{Seq: 2, Kind: protocol.EventStageProgress, Stage: "cpu", Fraction: 0.5}}}); err != nil {
		t.Fatal(err)
	}
	ag := next(t, ch, "agent")
	if !strings.Contains(ag.data, `"kind":"stage_start"`) || !strings.Contains(ag.data, `"run":"`+v.ID+`"`) {
		t.Errorf("agent event = %s", ag.data)
	}
	if e := next(t, ch, "run"); !strings.Contains(e.data, `"stage":"cpu"`) || !strings.Contains(e.data, `"progress":0.5`) {
		t.Errorf("run event after progress = %s", e.data)
	}
	// A reconnect resumes after the first event: everything since comes again.
	again := ts.openStream("/api/v1/vetting/stream", a, first.id)
	next(t, again, "hello")
	if e := next(t, again, "run", "agent"); e.id == first.id {
		t.Errorf("resumed stream repeated event %s", e.id)
	} else if n, _ := strconv.Atoi(e.id); n <= mustAtoi(t, first.id) {
		t.Errorf("resumed at %s, want after %s", e.id, first.id)
	}
	if r := ts.do(req{method: "GET", path: "/api/v1/vetting/runs/" + v.ID + "/ssh", as: a}); r.code != http.StatusConflict {
		t.Errorf("ssh key of a run that is not held = %d, want 409", r.code)
	}
	if err := orch.Record(ctx, v.ID, &protocol.Report{RunID: v.ID, Verdict: verdict.Fail}); err != nil {
		t.Fatal(err)
	}
	if err := orch.Record(ctx, v.ID, &protocol.Events{Events: []protocol.Event{{Seq: 3, Kind: protocol.EventHolding, Addr: "10.9.0.50:22", HostKey: "ssh-ed25519 AAAAC3"}}}); err != nil {
		t.Fatal(err)
	}
	if r := ts.do(req{method: "GET", path: "/api/v1/vetting/runs/" + v.ID + "/ssh", token: writer}); r.code != http.StatusForbidden {
		t.Errorf("ssh key for a writer = %d, want 403", r.code)
	}
	r = ts.do(req{method: "GET", path: "/api/v1/vetting/runs/" + v.ID + "/ssh", as: a})
	var k wire.SSHLogin
	json.Unmarshal(r.body, &k)
	if r.code != http.StatusOK || !strings.HasPrefix(k.PrivateKey, "-----BEGIN OPENSSH PRIVATE KEY-----") || k.KnownHosts != "10.9.0.50 ssh-ed25519 AAAAC3" ||
		!strings.HasSuffix(k.Command, "root@10.9.0.50") {
		t.Errorf("ssh = %d %+v", r.code, k)
	}
	r = ts.do(req{method: "GET", path: "/api/v1/vetting/runs/" + v.ID + "/report.html", as: a})
	if r.code != http.StatusOK || !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'none'") || !strings.Contains(string(r.body), "pc-01") {
		t.Errorf("report.html = %d %q", r.code, r.header.Get("Content-Security-Policy"))
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
