package backuphttp

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/backup"
	"kiln.dev/kiln/services/store"
)

// mux mounts routes without authentication (services/api tests that part)
// and records them.
type mux struct {
	*http.ServeMux
	routes map[string]api.Route
}

func (m mux) MountRoute(r api.Route, h http.Handler) {
	m.routes[r.Method+" "+r.Path] = r
	m.Handle(r.Method+" "+r.Path, h)
}

func post(t *testing.T, url string, body any) (*http.Response, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

func TestRoutes(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	st, err := store.Open(ctx, store.Path(state))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.CreateHost(ctx, store.Host{Name: "node1", MACs: []string{"52:54:00:00:01:01"}}); err != nil {
		t.Fatal(err)
	}
	src := func(now time.Time) backup.Source {
		return backup.Source{StateDir: state, Store: st, Version: "test", Hostname: "lab1", Now: now}
	}
	dir := filepath.Join(state, backup.BackupDirName)
	mx := mux{http.NewServeMux(), map[string]api.Route{}}
	(&Handler{Source: src, Dir: dir, Log: slog.New(slog.DiscardHandler)}).Mount(mx)
	ts := httptest.NewServer(mx)
	defer ts.Close()
	for _, p := range []string{"POST /api/v1/backup", "GET /api/v1/backups/{name}"} {
		if r := mx.routes[p]; r.Scope != api.ScopeAdmin || !r.Credentials {
			t.Errorf("%s = scope %q, credentials %v; backups hold credentials: admin and Credentials", p, r.Scope, r.Credentials)
		}
	}

	file, pub, _ := backup.GenerateKeyFile()
	secret, _ := backup.ParseKeyFile(file)
	resp, body := post(t, ts.URL+"/api/v1/backup", Request{PublicKey: pub})
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), `attachment; filename="kiln-lab1-`) {
		t.Fatalf("POST /api/v1/backup = %d %v", resp.StatusCode, resp.Header)
	}
	res, err := backup.Restore(ctx, bytes.NewReader(body), secret, backup.Target{StateDir: filepath.Join(t.TempDir(), "s"), Now: time.Now()})
	if err != nil || res.Manifest.Rows["hosts"] != 1 {
		t.Fatalf("restoring the download = %+v, %v", res.Manifest.Rows, err)
	}
	resp, body = post(t, ts.URL+"/api/v1/backup", Request{Passphrase: "pass phrase"})
	pk, _ := backup.Passphrase("pass phrase", 0)
	if _, err := backup.Restore(ctx, bytes.NewReader(body), pk, backup.Target{StateDir: filepath.Join(t.TempDir(), "s"), Now: time.Now()}); resp.StatusCode != 200 || err != nil {
		t.Errorf("passphrase download = %d, restore %v", resp.StatusCode, err)
	}

	for _, c := range []struct {
		name  string
		req   Request
		field string
	}{
		{"nothing", Request{}, "passphrase"},
		{"both", Request{Passphrase: "a", PublicKey: pub}, "passphrase"},
		{"secret key", Request{PublicKey: "AGE-SECRET-KEY-1XYZ"}, "public_key"},
	} {
		resp, body := post(t, ts.URL+"/api/v1/backup", c.req)
		var e api.ErrorBody
		json.Unmarshal(body, &e)
		if resp.StatusCode != 400 || e.Error.Field != c.field {
			t.Errorf("%s: POST /api/v1/backup = %d %s, want 400 naming %s", c.name, resp.StatusCode, body, c.field)
		}
	}

	// Scheduled backups: listed newest first with the last result, and
	// downloadable by name only.
	sched := &backup.Schedule{Every: time.Hour, Keep: 5, Key: secret, Dir: dir, Source: src, Log: slog.New(slog.DiscardHandler), Now: time.Now}
	first := sched.Once(ctx)
	if first.Error != "" {
		t.Fatal(first.Error)
	}
	var list List
	_, body = get(t, ts.URL+"/api/v1/backups")
	if err := json.Unmarshal(body, &list); err != nil || len(list.Files) != 1 || list.Files[0].Name != first.File || list.Last == nil || list.Last.File != first.File {
		t.Fatalf("GET /api/v1/backups = %s (%v)", body, err)
	}
	resp, body = get(t, ts.URL+"/api/v1/backups/"+first.File)
	if _, err := backup.Restore(ctx, bytes.NewReader(body), secret, backup.Target{StateDir: filepath.Join(t.TempDir(), "s"), Now: time.Now()}); resp.StatusCode != 200 || err != nil {
		t.Errorf("download of %s = %d, restore %v", first.File, resp.StatusCode, err)
	}
	for _, name := range []string{"status.json", "..%2Fkiln.db", ".x.backup", "kiln-none.backup"} {
		if resp, _ := get(t, ts.URL+"/api/v1/backups/"+name); resp.StatusCode != 404 {
			t.Errorf("GET /api/v1/backups/%s = %d, want 404", name, resp.StatusCode)
		}
	}
}
