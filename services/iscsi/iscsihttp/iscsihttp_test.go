package iscsihttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/iscsi"
	"kiln.dev/kiln/services/store"
)

// mux mounts routes without authentication (services/api tests that part)
// and records each route's scope.
type mux struct {
	*http.ServeMux
	scopes map[string]api.Scope
}

func (m mux) Mount(pattern string, scope api.Scope, h http.Handler) {
	m.scopes[pattern] = scope
	m.Handle(pattern, h)
}

func newServer(t *testing.T, m *iscsi.Manager, why error) (*httptest.Server, mux) {
	t.Helper()
	mx := mux{http.NewServeMux(), map[string]api.Scope{}}
	(&Handler{Manager: m, Unavailable: why, Log: slog.New(slog.DiscardHandler)}).Mount(mx)
	ts := httptest.NewServer(mx)
	t.Cleanup(ts.Close)
	return ts, mx
}

func call(t *testing.T, ts *httptest.Server, method, path, ctype string, body io.Reader, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

func TestRoutes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, store.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.CreateHost(ctx, store.Host{Name: "node1", MACs: []string{"52:54:00:00:01:01"}}); err != nil {
		t.Fatal(err)
	}
	m, err := iscsi.OpenManager(ctx, st, dir, "hall.example", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	ts, mx := newServer(t, m, nil)
	if mx.scopes["POST /api/v1/hosts/{name}/iscsi"] != api.ScopeAdmin || mx.scopes["GET /api/v1/volumes"] != api.ScopeRead ||
		mx.scopes["DELETE /api/v1/volumes/{label...}"] != api.ScopeWrite {
		t.Errorf("scopes = %v; CHAP secrets need admin, changes write, listing read", mx.scopes)
	}

	img := append([]byte("boot sector"), make([]byte, 3<<20)...) // 3 MiB + a bit: rounds up to 4 MiB
	var v VolumeJSON
	if code := call(t, ts, "PUT", "/api/v1/volumes/image?name=debian", "application/octet-stream", bytes.NewReader(img), &v); code != 201 || v.Size != 4<<20 || v.Label != "debian" {
		t.Fatalf("upload = %d %+v; want 201, a 4 MiB golden volume", code, v)
	}
	if code := call(t, ts, "POST", "/api/v1/volumes", "application/json", jsonBody(CreateRequest{Host: "node1", Name: "boot", From: "debian", Size: 8 << 20}), &v); code != 201 || v.Source != "volume:debian" || v.Target != "iqn.2026-01.example.hall:node1" {
		t.Fatalf("clone = %d %+v", code, v)
	}
	if code := call(t, ts, "PATCH", "/api/v1/volumes/node1/boot", "application/json", jsonBody(GrowRequest{Size: 16 << 20}), &v); code != 200 || v.Size != 16<<20 {
		t.Errorf("grow = %d %+v", code, v)
	}
	var list ListJSON
	if code := call(t, ts, "GET", "/api/v1/volumes", "", nil, &list); code != 200 || len(list.Volumes) != 2 {
		t.Fatalf("list = %d %+v", code, list)
	}
	boot := list.Volumes[1]
	if boot.Label != "node1/boot" || boot.LUN != 0 || boot.Allocated == 0 || boot.Allocated >= boot.Size || list.Space.Total == 0 || list.Space.Promised == 0 {
		t.Errorf("list = %+v; want node1/boot at LUN 0 with allocated < logical, and the partition's space", list)
	}

	var e api.ErrorBody
	for _, c := range []struct {
		name, method, path string
		body               any
		code               int
		field              string
	}{
		{"quota", "POST", "/api/v1/volumes", CreateRequest{Host: "node1", Name: "huge", Size: 1 << 50}, http.StatusInsufficientStorage, "size"},
		{"bad name", "POST", "/api/v1/volumes", CreateRequest{Host: "node1", Name: "a b", Size: 1 << 20}, 422, "name"},
		{"shrink", "PATCH", "/api/v1/volumes/node1/boot", GrowRequest{Size: 1 << 20}, 422, ""},
		{"no confirmation", "DELETE", "/api/v1/volumes/node1/boot?confirm=boot", nil, 422, "confirm"},
		{"unknown volume", "DELETE", "/api/v1/volumes/node1/nope?confirm=node1/nope", nil, 404, ""},
	} {
		var body io.Reader
		if c.body != nil {
			body = jsonBody(c.body)
		}
		e = api.ErrorBody{}
		if code := call(t, ts, c.method, c.path, "application/json", body, &e); code != c.code || e.Error.Field != c.field || e.Error.Message == "" {
			t.Errorf("%s: %d %+v, want %d naming field %q", c.name, code, e, c.code, c.field)
		}
	}
	if code := call(t, ts, "DELETE", "/api/v1/volumes/node1/boot?confirm=node1/boot", "", nil, nil); code != 204 {
		t.Errorf("delete with the typed confirmation = %d, want 204", code)
	}

	var creds iscsi.Credentials
	if code := call(t, ts, "POST", "/api/v1/hosts/node1/iscsi", "application/json", jsonBody(InitiatorRequest{Mutual: true}), &creds); code != 201 || len(creds.Secret) != 16 || creds.MutualSecret == "" {
		t.Fatalf("CHAP = %d %+v", code, creds)
	}
	req, _ := http.NewRequest("GET", ts.URL+"/api/v1/hosts/node1/iscsi", nil)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Contains(string(b), creds.Secret) || !strings.Contains(string(b), creds.IQN) {
		t.Errorf("GET initiator = %d %s; want the IQN and no secret", resp.StatusCode, b)
	}
}

func TestUnavailable(t *testing.T) {
	ts, _ := newServer(t, nil, errors.New("set provisioning.domain"))
	var e api.ErrorBody
	if code := call(t, ts, "GET", "/api/v1/volumes", "", nil, &e); code != 503 || !strings.Contains(e.Error.Message, "provisioning.domain") {
		t.Errorf("without a manager: %d %+v, want 503 saying why", code, e)
	}
}
