package mgmt

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/internal/syncbuf"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/svc"
)

func TestLoadOrCreateCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mgmt", "tls")
	subj := certSubjects{hostnames: []string{"box", "localhost"}, ips: []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.ParseIP("192.0.2.7").To4()}}
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

	first, created, err := loadOrCreateCert(dir, subj, now)
	if err != nil || !created {
		t.Fatalf("loadOrCreateCert on an empty dir = created %v, %v; want created", created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem mode = %v, want 0600", fi.Mode().Perm())
	}
	leaf := first.Leaf
	if diff := cmp.Diff([]string{"box", "localhost"}, leaf.DNSNames); diff != "" {
		t.Errorf("DNS SANs (-want +got):\n%s", diff)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if diff := cmp.Diff([]string{"127.0.0.1", "192.0.2.7"}, ips); diff != "" {
		t.Errorf("IP SANs (-want +got):\n%s", diff)
	}
	if leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm = %v, want ECDSA", leaf.PublicKeyAlgorithm)
	}
	if err := leaf.VerifyHostname("box"); err != nil {
		t.Errorf("VerifyHostname(box): %v", err)
	}
	if !leaf.NotBefore.Before(now) || leaf.NotAfter.Before(now.AddDate(5, 0, 0)) {
		t.Errorf("validity %v – %v does not cover now and the next years", leaf.NotBefore, leaf.NotAfter)
	}

	again, created, err := loadOrCreateCert(dir, subj, now.Add(time.Hour))
	if err != nil || created {
		t.Fatalf("second loadOrCreateCert = created %v, %v; want the existing one", created, err)
	}
	if fingerprint(again) != fingerprint(first) {
		t.Errorf("fingerprint changed across restarts: %s → %s", fingerprint(first), fingerprint(again))
	}
	if fp := fingerprint(first); len(fp) != 32*3-1 || strings.ToUpper(fp) != fp {
		t.Errorf("fingerprint = %q, want 32 upper-case hex bytes joined by ':'", fp)
	}

	// A damaged key is moved aside and replaced.
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh, created, err := loadOrCreateCert(dir, subj, now)
	if err != nil || !created || fingerprint(fresh) == fingerprint(first) {
		t.Fatalf("loadOrCreateCert with a broken key = created %v, %v; want a new certificate", created, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "key.pem.broken")); err != nil {
		t.Errorf("broken key not kept aside: %v", err)
	}
}

// fixedStatus is a statusSource answering with fixed bytes or an error.
type fixedStatus struct {
	body []byte
	err  error
}

func (f fixedStatus) Status(context.Context) ([]byte, error) { return f.body, f.err }

const sampleStatus = `{"ready":true,"services":[{"name":"mgmt","state":"ready"},{"name":"dns","state":"backoff","restarts":2}]}`

func TestPlainHandler(t *testing.T) {
	for _, tc := range []struct {
		httpsPort      int
		method, target string
		host           string
		wantCode       int
		wantLocation   string
	}{
		{8443, "GET", "/", "kiln.lan:8080", 308, "https://kiln.lan:8443/"},
		{8443, "GET", "/ui/hosts?x=1&y=2", "kiln.lan:8080", 308, "https://kiln.lan:8443/ui/hosts?x=1&y=2"},
		{443, "GET", "/a", "kiln.lan", 308, "https://kiln.lan/a"},
		{443, "POST", "/api/v1/status", "10.0.0.1:80", 308, "https://10.0.0.1/api/v1/status"},
		{443, "GET", "/", "[fd00::1]:80", 308, "https://[fd00::1]/"},
		{8443, "GET", "/", "[fd00::1]", 308, "https://[fd00::1]:8443/"},
		{8443, "GET", "/healthz", "kiln.lan:8080", 200, ""},
		{0, "GET", "/api/v1/status", "kiln.lan", 200, ""}, // no HTTPS: HTTP serves everything
	} {
		t.Run(strconv.Itoa(tc.httpsPort)+" "+tc.method+" "+tc.host+tc.target, func(t *testing.T) {
			h := &handlers{log: slog.New(slog.DiscardHandler), status: fixedStatus{body: []byte(sampleStatus)}, httpsPort: tc.httpsPort}
			req := httptest.NewRequest(tc.method, tc.target, nil)
			req.Host = tc.host
			rec := httptest.NewRecorder()
			h.plain().ServeHTTP(rec, req)
			if rec.Code != tc.wantCode || rec.Header().Get("Location") != tc.wantLocation {
				t.Errorf("%s http://%s%s = %d %q, want %d %q", tc.method, tc.host, tc.target, rec.Code, rec.Header().Get("Location"), tc.wantCode, tc.wantLocation)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	for _, tc := range []struct {
		name   string
		accept string
		status fixedStatus
		want   string
	}{
		{"plain", "", fixedStatus{body: []byte(sampleStatus)}, "ok\n"},
		{"browser", "text/html,application/xhtml+xml,*/*;q=0.8", fixedStatus{body: []byte(sampleStatus)}, "ok\n"},
		{"json", "application/json", fixedStatus{body: []byte(sampleStatus)},
			`{"status":"ok","ready":true,"services":{"dns":"backoff","mgmt":"ready"}}`},
		{"json without supervisor", "application/json; q=1", fixedStatus{err: errors.New("no socket")},
			`{"status":"ok","supervisor":"unreachable"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &handlers{log: slog.New(slog.DiscardHandler), status: tc.status, httpsPort: 443}
			req := httptest.NewRequest("GET", "/healthz", nil)
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			rec := httptest.NewRecorder()
			h.api().ServeHTTP(rec, req)
			got := rec.Body.String()
			if strings.HasPrefix(tc.want, "{") {
				var buf bytes.Buffer
				json.Compact(&buf, rec.Body.Bytes())
				got = buf.String()
			}
			if rec.Code != 200 || got != tc.want {
				t.Errorf("GET /healthz (Accept %q) = %d %q, want 200 %q", tc.accept, rec.Code, got, tc.want)
			}
		})
	}
}

func TestAPIStatus(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   fixedStatus
		wantCode int
		wantBody string
	}{
		{"passes through", fixedStatus{body: []byte(sampleStatus)}, 200, sampleStatus},
		{"supervisor down", fixedStatus{err: errors.New("dial unix: no such file")}, 503, "supervisor status unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &handlers{log: slog.New(slog.DiscardHandler), status: tc.status, httpsPort: 443}
			rec := httptest.NewRecorder()
			h.api().ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/status", nil))
			if rec.Code != tc.wantCode || !strings.Contains(rec.Body.String(), tc.wantBody) {
				t.Errorf("GET /api/v1/status = %d %q, want %d containing %q", rec.Code, rec.Body.String(), tc.wantCode, tc.wantBody)
			}
		})
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A stand-in supervisor control socket: a real HTTP server on a unix socket.
	ln, err := net.Listen("unix", filepath.Join(runDir, "supervisor.sock"))
	if err != nil {
		t.Fatal(err)
	}
	sup := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/status" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, sampleStatus)
	})}
	go sup.Serve(ln)
	defer sup.Close()

	httpsPort, httpPort := freePort(t), freePort(t)
	logs := &syncbuf.Buffer{}
	ready := make(chan struct{})
	var once sync.Once
	cfg := config.Default()
	cfg.Hostname = "testbox"
	cfg.Management = config.Management{HTTPSPort: httpsPort, HTTPPort: httpPort, Listen: "127.0.0.1"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, svc.Env{
			Config:   cfg,
			StateDir: filepath.Join(dir, "state"),
			RunDir:   runDir,
			Logger:   slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), nil)).With("component", "mgmt"),
			Ready:    func() { once.Do(func() { close(ready) }) },
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready within 10s")
	}

	hc := &http.Client{
		Timeout:       5 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	get := func(url string) (*http.Response, string) {
		t.Helper()
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	base := "https://127.0.0.1:" + strconv.Itoa(httpsPort)
	plain := "http://127.0.0.1:" + strconv.Itoa(httpPort)

	resp, body := get(base + "/healthz")
	if resp.StatusCode != 200 || body != "ok\n" {
		t.Errorf("GET %s/healthz = %d %q, want 200 ok", base, resp.StatusCode, body)
	}
	peer := resp.TLS.PeerCertificates[0]
	if !slices.Contains(peer.DNSNames, "testbox") || !slices.Contains(peer.DNSNames, "localhost") {
		t.Errorf("served certificate names = %v, want testbox and localhost", peer.DNSNames)
	}
	if resp, body := get(plain + "/healthz"); resp.StatusCode != 200 || body != "ok\n" {
		t.Errorf("GET %s/healthz = %d %q, want 200 ok", plain, resp.StatusCode, body)
	}
	if resp, _ := get(plain + "/ui?a=b"); resp.StatusCode != 308 || resp.Header.Get("Location") != base+"/ui?a=b" {
		t.Errorf("GET %s/ui?a=b = %d %q, want 308 to %s/ui?a=b", plain, resp.StatusCode, resp.Header.Get("Location"), base)
	}
	if resp, body := get(base + "/api/v1/status"); resp.StatusCode != 200 || body != sampleStatus {
		t.Errorf("GET /api/v1/status = %d %q, want the supervisor's JSON", resp.StatusCode, body)
	}
	checkMetrics(t, hc, base, filepath.Join(dir, "state"), runDir)
	if fi, err := os.Stat(filepath.Join(dir, "state", "mgmt", "tls", "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem: %v (mode %v), want 0600", err, fi.Mode().Perm())
	}
	if !strings.Contains(logs.String(), "sha256=") {
		t.Errorf("log lacks the certificate fingerprint:\n%s", logs)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(httpsPort), time.Second); err == nil {
		t.Errorf("HTTPS port still accepts connections after shutdown")
	}
}

func TestRunReportsBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port
	cfg := config.Default()
	cfg.Management = config.Management{HTTPPort: busy, Listen: "127.0.0.1"}
	err = Run(context.Background(), svc.Env{Config: cfg, StateDir: t.TempDir(), RunDir: t.TempDir(), Ready: func() { t.Error("Ready called although binding failed") }})
	if err == nil || !strings.Contains(err.Error(), "management.http_port: binding 127.0.0.1:"+strconv.Itoa(busy)) {
		t.Errorf("Run with a busy HTTP port = %v, want an error naming management.http_port", err)
	}
}

// TestSlowClientsAreCut: 50 logins whose body never comes no longer hold 50
// connections open, and one source cannot open more than its share.
func TestSlowClientsAreCut(t *testing.T) {
	lim := defaultLimits()
	lim.body.Grace = 300 * time.Millisecond // the real 10 s would only slow the test
	lim.conns.PerSource = 60
	port := freePort(t)
	cfg := config.Default()
	cfg.Management = config.Management{HTTPSPort: port, Listen: "127.0.0.1"}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, svc.Env{Config: cfg, StateDir: t.TempDir(), RunDir: t.TempDir(),
			Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Ready: func() { close(ready) }}, lim)
	}()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("run returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready within 10s")
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	tlsDial := func() (*tls.Conn, error) {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	var slow []*tls.Conn
	for i := range 50 {
		c, err := tlsDial()
		if err != nil {
			t.Fatalf("slow login %d: %v", i+1, err)
		}
		if _, err := io.WriteString(c, "POST /api/v1/login HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{"); err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
	}
	wait := time.Now().Add(10 * time.Second) // one bound for all of them
	for i, c := range slow {
		c.SetReadDeadline(wait)
		_, err := io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("slow login %d is still open after its body deadline", i+1)
		}
	}
	// Up to the per-source cap connections are taken, past it refused.
	var open int
	for range 61 {
		if _, err := tlsDial(); err == nil {
			open++
		}
	}
	if open != 60 {
		t.Errorf("TLS connections from one source: %d accepted of 61, want the cap of 60", open)
	}
}
