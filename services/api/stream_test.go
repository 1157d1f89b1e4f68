package api

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/services/api/wire"
	"kiln.dev/kiln/services/store"
)

var update = flag.Bool("update", false, "rewrite docs/openapi.json from the router")

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	id, event, data string
}

// openStream starts an event stream; events arrive on the channel until
// the test ends.
func (ts *testServer) openStream(path string, as *browser, lastID string) <-chan sseEvent {
	ts.t.Helper()
	ch, _ := ts.dialStream(path, as, lastID)
	return ch
}

// dialStream is openStream that also returns a func closing the stream.
func (ts *testServer) dialStream(path string, as *browser, lastID string) (<-chan sseEvent, context.CancelFunc) {
	ts.t.Helper()
	res, cancel := ts.getStream(path, as, lastID)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		ts.t.Fatalf("GET %s = %d %s", path, res.StatusCode, res.Header.Get("Content-Type"))
	}
	return readEvents(res), cancel
}

// getStream asks for an event stream and returns the response, whatever
// its status, and a func ending the request.
func (ts *testServer) getStream(path string, as *browser, lastID string) (*http.Response, context.CancelFunc) {
	ts.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ts.t.Cleanup(cancel)
	r, _ := http.NewRequestWithContext(ctx, "GET", ts.ts.URL+path, nil)
	r.Header.Set("Accept", "text/event-stream")
	r.Header.Set("Cookie", SessionCookie+"="+as.cookie)
	if lastID != "" {
		r.Header.Set("Last-Event-ID", lastID)
	}
	res, err := ts.hc.Do(r)
	if err != nil {
		ts.t.Fatal(err)
	}
	return res, cancel
}

// readEvents parses a stream's events onto a channel until it ends.
func readEvents(res *http.Response) <-chan sseEvent {
	ch := make(chan sseEvent, 100)
	go func() {
		defer res.Body.Close()
		defer close(ch)
		sc := bufio.NewScanner(res.Body)
		var e sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if e.event != "" {
					ch <- e
				}
				e = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				e.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				e.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				e.data = line[6:]
			}
		}
	}()
	return ch
}

// next returns the next event named one of kinds, skipping others.
func next(t *testing.T, ch <-chan sseEvent, kinds ...string) sseEvent {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended while waiting for %v", kinds)
			}
			for _, k := range kinds {
				if e.event == k {
					return e
				}
			}
		case <-deadline:
			t.Fatalf("no %v event within 5s", kinds)
		}
	}
}

func TestEventStream(t *testing.T) {
	ts := newTestServer(t)
	a := ts.admin()
	ctx := context.Background()
	ch := ts.openStream("/api/v1/events", a, "")
	next(t, ch, "hello")
	if e := next(t, ch, "status"); !strings.Contains(e.data, `"mgmt"`) {
		t.Errorf("status event = %q", e.data)
	}
	if _, err := ts.db.CreateHost(ctx, store.Host{Name: "pc-01", MACs: []string{"52:54:00:00:00:01"}}); err != nil {
		t.Fatal(err)
	}
	next(t, ch, "hosts")
	ts.db.AddBootEvent(ctx, store.BootEvent{MAC: "52:54:00:00:00:01", Kind: store.EventDHCPOffer})
	ts.db.AddBootEvent(ctx, store.BootEvent{MAC: "52:54:00:00:00:01", Kind: store.EventDHCPAck})
	first := next(t, ch, "boot")
	second := next(t, ch, "boot")
	var ev wire.BootEvent
	json.Unmarshal([]byte(second.data), &ev)
	if first.id == "" || ev.Kind != store.EventDHCPAck || second.id != itoa(ev.ID) {
		t.Errorf("boot events = %+v, %+v", first, second)
	}
	// A reconnect with Last-Event-ID gets what it missed.
	again := ts.openStream("/api/v1/events", a, first.id)
	if e := next(t, again, "boot"); e.id != second.id {
		t.Errorf("resumed stream's first boot event = %+v, want id %s", e, second.id)
	}
}

func TestServiceLogs(t *testing.T) {
	ts := newTestServer(t)
	a := ts.admin()
	ts.sup.Append("dhcp", "one", "two", "three")
	r := ts.do(req{method: "GET", path: "/api/v1/services/dhcp/logs?since=1", as: a})
	var lines []supervisor.Line
	json.Unmarshal(r.body, &lines)
	if r.code != http.StatusOK || len(lines) != 2 || lines[0].Text != "two" {
		t.Errorf("GET logs?since=1 = %d %s", r.code, r.body)
	}
	r = ts.do(req{method: "GET", path: "/api/v1/services/dhcp/logs?tail=1", as: a})
	json.Unmarshal(r.body, &lines)
	if len(lines) != 1 || lines[0].Text != "three" {
		t.Errorf("GET logs?tail=1 = %s", r.body)
	}
	for _, p := range []string{"/api/v1/services/nope/logs", "/api/v1/services/dhcp/logs?since=x", "/api/v1/services/dhcp/logs?follow=1"} {
		if r := ts.do(req{method: "GET", path: p, as: a}); r.code/100 != 4 {
			t.Errorf("GET %s = %d, want 4xx", p, r.code)
		}
	}
	// Following: resume after seq 2, then a new line arrives live.
	ch := ts.openStream("/api/v1/services/dhcp/logs?follow=1", a, "2")
	if e := next(t, ch, "line"); e.id != "3" || !strings.Contains(e.data, `"three"`) {
		t.Errorf("first followed line = %+v, want seq 3", e)
	}
	ts.sup.Append("dhcp", "four")
	if e := next(t, ch, "line"); e.id != "4" {
		t.Errorf("live line = %+v, want seq 4", e)
	}
	// Restart, and the status route.
	if r := ts.do(req{method: "POST", path: "/api/v1/services/dhcp/restart", as: a}); r.code != http.StatusAccepted || len(ts.sup.restarted) != 1 {
		t.Errorf("restart = %d %s", r.code, r.body)
	}
	if r := ts.do(req{method: "GET", path: "/api/v1/status"}); r.code != http.StatusOK || !strings.Contains(string(r.body), `"ready": true`) {
		t.Errorf("GET status = %d %s", r.code, r.body)
	}
}

func TestNoSupervisor(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.Supervisor = nil })
	r := ts.do(req{method: "GET", path: "/api/v1/services", as: ts.admin()})
	if r.code != http.StatusServiceUnavailable || r.errBody(t).Code != CodeUnavailable {
		t.Errorf("GET services without a supervisor = %d %s", r.code, r.body)
	}
}

// TestOpenAPIDocument keeps docs/openapi.json equal to what the router
// serves (go test ./services/api -run OpenAPI -update rewrites it).
func TestOpenAPIDocument(t *testing.T) {
	ts := newTestServer(t)
	r := ts.do(req{method: "GET", path: "/api/v1/openapi.json"})
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("GET openapi.json = %d, %v", r.code, err)
	}
	for _, rt := range ts.Routes() {
		if _, ok := doc.Paths[rt.Path][strings.ToLower(rt.Method)]; !ok {
			t.Errorf("OpenAPI lacks %s", rt.Pattern())
		}
	}
	golden := filepath.Join("..", "..", "docs", "openapi.json")
	if *update {
		if err := os.WriteFile(golden, r.body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./services/api -run OpenAPI -update)", err)
	}
	if diff := cmp.Diff(string(want), string(r.body)); diff != "" {
		t.Errorf("docs/openapi.json is stale (go test ./services/api -run OpenAPI -update) (-docs +served):\n%s", diff)
	}
}
