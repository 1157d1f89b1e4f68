package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/internal/syncbuf"
	"kiln.dev/kiln/services/metrics"
)

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestServeEndToEnd builds kiln and runs "kiln serve" on this host with the
// management service on free loopback ports.
func TestServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kiln binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "kiln")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	httpsPort, httpPort := freeTCPPort(t), freeTCPPort(t)
	cfgPath := filepath.Join(dir, "kiln.yaml")
	cfg := "hostname: e2e\nmanagement:\n  https_port: " + strconv.Itoa(httpsPort) +
		"\n  http_port: " + strconv.Itoa(httpPort) + "\n  listen: 127.0.0.1\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")

	// Stand in for systemd's notify socket (Type=notify).
	notifyPath := filepath.Join(dir, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	readNotify := func() string {
		t.Helper()
		notify.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 256)
		n, err := notify.Read(buf)
		if err != nil {
			t.Fatalf("reading systemd notification: %v", err)
		}
		return string(buf[:n])
	}

	serve := exec.Command(bin, "serve", "--config", cfgPath, "--state", state)
	serve.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath)
	stderr := &syncbuf.Buffer{}
	serve.Stderr = stderr
	stdout, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()
	t.Cleanup(func() {
		serve.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("kiln serve stderr:\n%s", stderr)
		}
	})
	var out syncbuf.Buffer
	sawReady := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.Write(append(sc.Bytes(), '\n'))
			if sc.Text() == "kiln: ready" {
				close(sawReady)
			}
		}
	}()
	select {
	case <-sawReady:
	case err := <-exited:
		t.Fatalf("kiln serve exited before ready: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("no \"kiln: ready\" within 15s")
	}

	if got := readNotify(); got != "READY=1" {
		t.Errorf("kiln serve told systemd %q, want READY=1", got)
	}
	// Issue 11, finding 11: the state directory and the database are root's only.
	for p, want := range map[string]os.FileMode{state: 0o700, filepath.Join(state, "kiln.db"): 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %04o, want %04o", p, fi.Mode().Perm(), want)
		}
	}

	hc := &http.Client{
		Timeout:       5 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	get := func(url string) (int, string, http.Header) {
		t.Helper()
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	https := "https://127.0.0.1:" + strconv.Itoa(httpsPort)
	plain := "http://127.0.0.1:" + strconv.Itoa(httpPort)
	for _, url := range []string{https + "/healthz", plain + "/healthz"} {
		if code, body, _ := get(url); code != 200 || body != "ok\n" {
			t.Errorf("GET %s = %d %q, want 200 %q", url, code, body, "ok\n")
		}
	}
	if code, _, h := get(plain + "/hosts?x=1"); code != 308 || h.Get("Location") != https+"/hosts?x=1" {
		t.Errorf("GET %s/hosts?x=1 = %d to %q, want 308 to %s/hosts?x=1", plain, code, h.Get("Location"), https)
	}
	if code, body, _ := get(https + "/api/v1/status"); code != 200 || !strings.Contains(body, `"ready": true`) {
		t.Errorf("GET /api/v1/status = %d %q, want 200 with the supervisor's status", code, body)
	}

	runDir := filepath.Join(state, "run")
	// Every service serves its metrics to mgmt; /metrics wants a read token.
	if code, _, _ := get(https + "/metrics"); code != http.StatusUnauthorized {
		t.Errorf("GET /metrics without credentials = %d, want 401", code)
	}
	if fi, err := os.Stat(metrics.SocketPath(runDir, "mgmt")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mgmt's metrics socket: %v, want it with mode 0600", err)
	}
	statusOut, err := exec.Command(bin, "status", "--run", runDir, "--json").Output()
	if err != nil {
		t.Fatalf("kiln status --json: %v", err)
	}
	var st supervisor.Status
	if err := json.Unmarshal(statusOut, &st); err != nil {
		t.Fatalf("kiln status --json printed %q: %v", statusOut, err)
	}
	i := slices.IndexFunc(st.Services, func(s supervisor.ServiceStatus) bool { return s.Name == "mgmt" })
	if !st.Ready || i < 0 || st.Services[i].State != supervisor.StateReady {
		t.Fatalf("kiln status --json = %s, want mgmt ready", statusOut)
	}
	mgmtPID := st.Services[i].PID
	table, err := exec.Command(bin, "status", "--run", runDir).Output()
	if err != nil || !regexp.MustCompile(`(?m)^mgmt +ready +`+strconv.Itoa(mgmtPID)+` `).Match(table) {
		t.Errorf("kiln status = %v\n%s\nwant a row for mgmt ready with pid %d", err, table, mgmtPID)
	}
	if b, err := os.ReadFile(filepath.Join(state, "log", "mgmt.log")); err != nil || !strings.Contains(string(b), "sha256=") {
		t.Errorf("mgmt.log (%v) lacks the certificate fingerprint:\n%s", err, b)
	}

	serve.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Errorf("kiln serve after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("kiln serve did not exit within 10s of SIGTERM")
	}
	if got := readNotify(); got != "STOPPING=1" {
		t.Errorf("kiln serve told systemd %q on SIGTERM, want STOPPING=1", got)
	}
	if got := out.String(); got != "kiln: ready\n" {
		t.Errorf("kiln serve stdout = %q, want exactly %q", got, "kiln: ready\n")
	}
	if err := syscall.Kill(mgmtPID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("mgmt pid %d still exists after kiln serve exited (kill 0: %v)", mgmtPID, err)
	}
	if _, err := os.Stat(supervisor.SocketPath(runDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket left behind: %v", err)
	}
}

func TestStatusCommand(t *testing.T) {
	t.Run("no supervisor", func(t *testing.T) {
		var out, errb bytes.Buffer
		err := runStatus(context.Background(), []string{"--run", t.TempDir()}, stdio{nil, &out, &errb})
		if err == nil || !strings.Contains(err.Error(), "no supervisor answers") {
			t.Errorf("runStatus without a supervisor = %v, want a \"no supervisor answers\" error", err)
		}
	})
	t.Run("not ready", func(t *testing.T) {
		// A real supervisor whose one service never sends READY=1.
		runDir := t.TempDir()
		sup, err := supervisor.New([]supervisor.Spec{{Name: "sleepy", Args: []string{"30"}, Enabled: true}},
			supervisor.Options{Exe: "/bin/sleep", Argv0: "sleep", RunDir: runDir, StartTimeout: time.Minute, StopTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if err := sup.Start(); err != nil {
			t.Fatal(err)
		}
		defer sup.Stop(context.Background())
		var out bytes.Buffer
		err = runStatus(context.Background(), []string{"--run", runDir}, stdio{nil, &out, io.Discard})
		if !errors.Is(err, errNotReady) {
			t.Errorf("runStatus = %v, want errNotReady", err)
		}
		if !strings.Contains(out.String(), "sleepy") || !strings.Contains(out.String(), "not ready: sleepy") {
			t.Errorf("runStatus printed:\n%s\nwant a row for sleepy and \"not ready: sleepy\"", out.String())
		}
	})
	t.Run("bad usage", func(t *testing.T) {
		err := runStatus(context.Background(), []string{"extra"}, stdio{nil, io.Discard, io.Discard})
		if !errors.Is(err, errUsage) {
			t.Errorf("runStatus(extra) = %v, want errUsage", err)
		}
	})
}

func TestPrintStatus(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	exit := now.Add(-time.Minute)
	next := now.Add(30 * time.Second)
	st := supervisor.Status{Services: []supervisor.ServiceStatus{
		{Name: "mgmt", Enabled: true, State: supervisor.StateReady, PID: 42, Since: now.Add(-90 * time.Second), StatusText: "serving"},
		{Name: "dns", Enabled: true, State: supervisor.StateCrashLoop, Restarts: 7, Since: now.Add(-2 * time.Second),
			LastExit: "exited with code 1", LastExitTime: &exit, CrashLoop: true, NextStart: &next},
		{Name: "dhcp", Enabled: true, State: supervisor.StateStarting, Since: now, WaitingFor: []string{"dns"}},
		{Name: "tftp", State: supervisor.StateStopped, Since: now},
	}}
	var b bytes.Buffer
	if err := printStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	want := `SERVICE  STATE       PID  RESTARTS  SINCE  DETAIL
mgmt     ready       42   0         1m30s  serving
dns      crash-loop  -    7         2s     CRASH LOOP; last exit: exited with code 1; next start in 30s
dhcp     starting    -    0         0s     waiting for dns
tftp     disabled    -    0         -      

not ready: dns, dhcp
`
	if got := b.String(); got != want {
		t.Errorf("printStatus =\n%s\nwant\n%s", got, want)
	}
}
