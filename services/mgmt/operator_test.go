package mgmt

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
)

// TestEveryAPIRouteNeedsCredentials enumerates the routes of the API exactly
// as mgmt builds it (routes other packages mount included): every one that
// is not public refuses an anonymous caller with the error shape.
func TestEveryAPIRouteNeedsCredentials(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(context.Background(), store.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	a, _, err := newAPI(context.Background(), svc.Env{Config: config.Default(), StateDir: dir, RunDir: dir}, db, "", log)
	if err != nil {
		t.Fatal(err)
	}
	h := &handlers{log: log, status: fixedStatus{body: []byte(sampleStatus)}, httpsPort: 443, rest: a.Handler()}
	srv := httptest.NewServer(h.api())
	defer srv.Close()
	n := 0
	mounted := map[string]bool{}
	for _, rt := range a.Routes() {
		if rt.Scope == api.ScopePublic {
			continue
		}
		n++
		mounted[rt.Pattern()] = true
		path := strings.NewReplacer("{name}", "x", "{id}", "1", "{ip}", "10.0.0.1").Replace(rt.Path)
		req, _ := http.NewRequest(rt.Method, srv.URL+path, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e api.ErrorBody
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || e.Error.Code != api.CodeUnauthenticated {
			t.Errorf("anonymous %s %s = %d %+v, want 401 unauthenticated", rt.Method, path, resp.StatusCode, e)
		}
	}
	if n < 20 {
		t.Errorf("only %d protected routes found", n)
	}
	for _, p := range []string{"GET /api/v1/update/status", "GET /api/v1/network", "POST /api/v1/backup", "GET /api/v1/backups/{name}"} {
		if !mounted[p] {
			t.Errorf("the API lacks the mounted route %s", p)
		}
	}
	// mgmt's own routes still answer, and / leads to the UI.
	for path, want := range map[string]int{"/healthz": 200, "/api/v1/status": 200, "/ui/": 200} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	if _, err := os.Stat(api.InitialPasswordPath(dir)); err != nil {
		t.Errorf("first start left no initial password: %v", err)
	}
}

func TestOperatorCertificate(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM, err := generateCert(certSubjects{hostnames: []string{"kiln.example"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := generateCert(certSubjects{hostnames: []string{"x"}}, time.Now())
	for name, b := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM, "other.pem": otherKey} {
		os.WriteFile(filepath.Join(dir, name), b, 0o600)
	}
	cfg := config.Default()
	cfg.API.TLSCert, cfg.API.TLSKey = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	fp, created, err := EnsureCertificate(cfg, t.TempDir())
	if err != nil || created || len(fp) != 95 {
		t.Fatalf("EnsureCertificate(operator cert) = %q, %v, %v", fp, created, err)
	}
	cfg.API.TLSKey = filepath.Join(dir, "other.pem")
	if _, _, err := EnsureCertificate(cfg, t.TempDir()); err == nil || !strings.Contains(err.Error(), "api.tls_cert") {
		t.Errorf("EnsureCertificate(mismatched key) = %v, want an error naming api.tls_cert", err)
	}
	// Without an operator certificate: the self-signed one, made once.
	state := t.TempDir()
	fp1, created, err := EnsureCertificate(config.Default(), state)
	if err != nil || !created {
		t.Fatalf("EnsureCertificate(self-signed) = %v, %v", created, err)
	}
	fp2, created, _ := EnsureCertificate(config.Default(), state)
	if created || fp1 != fp2 {
		t.Errorf("second EnsureCertificate = %q created %v, want %q again", fp2, created, fp1)
	}
}

func TestBackupSchedule(t *testing.T) {
	env := svc.Env{Config: config.Default(), StateDir: t.TempDir()}
	log := slog.New(slog.DiscardHandler)
	if s, err := backupSchedule(env, nil, log); s != nil || err != nil {
		t.Errorf("backupSchedule(no backup.every) = %v, %v; want none", s, err)
	}
	env.Config.Backup = config.Backup{Every: 24 * time.Hour, PublicKey: "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}
	s, err := backupSchedule(env, nil, log)
	if err != nil || s == nil || s.Keep != config.DefaultBackupKeep || s.Dir != filepath.Join(env.StateDir, "backups") || s.ID == "" {
		t.Errorf("backupSchedule(every 24h) = %+v, %v", s, err)
	}
}
