package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/internal/syncbuf"
	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/api/apiclient"
	"kiln.dev/kiln/services/api/wire"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/orchestrator"
)

// stubSupervisor answers the API's service routes with fixed data.
type stubSupervisor struct{}

func (stubSupervisor) Status(context.Context) (supervisor.Status, error) {
	return supervisor.Status{Ready: true, Services: []supervisor.ServiceStatus{{Name: "mgmt", Enabled: true, State: supervisor.StateReady, Since: time.Now()}}}, nil
}

func (stubSupervisor) Logs(_ context.Context, name string, since uint64) ([]supervisor.Line, error) {
	var out []supervisor.Line
	for i, t := range []string{"hello", "world"} {
		if uint64(i+1) > since {
			out = append(out, supervisor.Line{Seq: uint64(i + 1), Stream: "stdout", Text: t, Time: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)})
		}
	}
	return out, nil
}

func (s stubSupervisor) FollowLogs(ctx context.Context, name string, since uint64, fn func(supervisor.Line) error) error {
	ls, _ := s.Logs(ctx, name, since)
	for _, l := range ls {
		if err := fn(l); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

// testAppliance is an API server over TLS with a fresh store.
type testAppliance struct {
	url, state, password string
	db                   *store.Store
}

// newAppliance starts the API; mount adds routes from other packages.
func newAppliance(t *testing.T, mount ...func(srv *api.Server, db *store.Store, state string)) *testAppliance {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(context.Background(), store.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	srv, err := api.New(context.Background(), api.Options{Store: db, Supervisor: stubSupervisor{}, Config: config.Default(), StateDir: dir,
		BcryptCost: bcrypt.MinCost, Logger: log, Vetting: orchestrator.New(db, config.Vetting{}, dir, log)})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mount {
		m(srv, db, dir)
	}
	ts := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(func() { srv.Close(); ts.Close() })
	pw, err := api.ReadInitialPassword(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &testAppliance{url: ts.URL, state: dir, password: pw, db: db}
}

// cpuSpec is an expected spec (see services/vetting/spec).
const cpuSpec = "expect:\n  - fact: cpu.threads\n    min: 4\n"

func TestCLIThroughTheAPI(t *testing.T) {
	a := newAppliance(t)
	creds := filepath.Join(t.TempDir(), "kiln", "credentials.json")
	cred := []string{"--credentials", creds}

	// Not logged in yet.
	if _, _, err := runCmd(t, runLeases, "", cred...); !errors.Is(err, apiclient.ErrAuth) {
		t.Errorf("leases before login = %v, want apiclient.ErrAuth", err)
	}
	if _, _, err := runCmd(t, runLogin, "wrong password\n", append(cred, "--url", a.url, "--password-stdin")...); !errors.Is(err, apiclient.ErrAuth) {
		t.Errorf("login with a wrong password = %v, want apiclient.ErrAuth", err)
	}
	out, errOut, err := runCmd(t, runLogin, a.password+"\n", append(cred, "--url", a.url, "--password-stdin")...)
	if err != nil {
		t.Fatalf("login = %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "SHA-256 fingerprint") || !strings.Contains(out, "logged in to "+a.url+" as admin") || !strings.Contains(out, "first-boot password") {
		t.Errorf("login printed %q / %q", out, errOut)
	}
	fi, err := os.Stat(creds)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v (mode %v), want 0600", err, fi.Mode().Perm())
	}
	var c apiclient.Credentials
	b, _ := os.ReadFile(creds)
	json.Unmarshal(b, &c)
	if c.Default != a.url || !strings.HasPrefix(c.Servers[a.url].Token, api.TokenPrefix) || len(c.Servers[a.url].Fingerprint) != 95 {
		t.Errorf("credentials = %s", b)
	}

	// Hosts.
	spec := filepath.Join(t.TempDir(), "spec.yaml")
	os.WriteFile(spec, []byte(cpuSpec), 0o644)
	if out, _, err := runCmd(t, runHosts, "", append([]string{"add", "pc-01", "--mac", "52:54:00:00:00:01", "--profile", "vet", "--spec-file", spec}, cred...)...); err != nil || !strings.Contains(out, "added pc-01") {
		t.Fatalf("hosts add = %q, %v", out, err)
	}
	_, _, err = runCmd(t, runHosts, "", append([]string{"add", "pc-02", "--mac", "52:54:00:00:00:01"}, cred...)...)
	if err == nil || !strings.Contains(err.Error(), "macs[0]") || !strings.Contains(err.Error(), "pc-01") {
		t.Errorf("hosts add with a taken MAC = %v, want an error naming macs[0] and pc-01", err)
	}
	a.db.AddBootEvent(context.Background(), store.BootEvent{MAC: "52:54:00:00:00:01", Kind: store.EventDHCPAck})
	out, _, err = runCmd(t, runHosts, "", append([]string{"list"}, cred...)...)
	if err != nil || !strings.Contains(out, "pc-01") || !strings.Contains(out, "dhcp_ack") || !strings.HasPrefix(out, "NAME") {
		t.Errorf("hosts list = %q, %v", out, err)
	}
	out, _, err = runCmd(t, runHosts, "", append([]string{"get", "pc-01", "--json"}, cred...)...)
	var h wire.Host
	if err != nil || json.Unmarshal([]byte(out), &h) != nil || h.BootProfile != "vet" || h.ExpectedSpec != cpuSpec {
		t.Errorf("hosts get --json = %q, %v", out, err)
	}
	if _, _, err := runCmd(t, runHosts, "", append([]string{"get", "nope"}, cred...)...); !errors.Is(err, apiclient.ErrNotFound) {
		t.Errorf("hosts get nope = %v, want apiclient.ErrNotFound", err)
	}
	// Import and export go through the API when logged in and not given --state.
	if out, _, err := runCmd(t, runHosts, "hosts:\n  - {name: pc-03, macs: [52:54:00:00:00:03]}\n", append([]string{"import", "-"}, cred...)...); err != nil || !strings.Contains(out, "1 created") {
		t.Errorf("hosts import - = %q, %v", out, err)
	}
	if out, _, err := runCmd(t, runHosts, "", append([]string{"export", "--format", "csv"}, cred...)...); err != nil || !strings.Contains(out, "pc-03,52:54:00:00:00:03") {
		t.Errorf("hosts export = %q, %v", out, err)
	}
	if out, _, err := runCmd(t, runHosts, "", append([]string{"rm", "pc-01", "pc-03"}, cred...)...); err != nil || strings.Count(out, "removed") != 2 {
		t.Errorf("hosts rm = %q, %v", out, err)
	}

	// Registrations at the machines' consoles, approved and rejected in bulk.
	for i, name := range []string{"lab-1", "lab-2", "lab-3"} {
		mac := fmt.Sprintf("52:54:00:00:ab:%02x", i)
		a.db.EnrollUnknown(context.Background(), mac)
		if _, err := a.db.RequestRegistration(context.Background(), store.Registration{MAC: mac, Name: name, Role: "lab"}); err != nil {
			t.Fatal(err)
		}
	}
	if out, _, err := runCmd(t, runHosts, "", append([]string{"registrations"}, cred...)...); err != nil || !strings.HasPrefix(out, "NAME") || strings.Count(out, "pending") != 3 {
		t.Errorf("hosts registrations = %q, %v", out, err)
	}
	if out, _, err := runCmd(t, runHosts, "", append([]string{"approve", "lab-1", "52-54-00-00-ab-01"}, cred...)...); err != nil || strings.Count(out, "approved") != 2 {
		t.Errorf("hosts approve = %q, %v", out, err)
	}
	if out, _, err := runCmd(t, runHosts, "", append([]string{"reject", "--reason", "ask the proctor", "lab-3"}, cred...)...); err != nil || !strings.Contains(out, "rejected lab-3") {
		t.Errorf("hosts reject = %q, %v", out, err)
	}
	if _, errOut, err := runCmd(t, runHosts, "", append([]string{"approve", "lab-3", "nope"}, cred...)...); err == nil || !strings.Contains(errOut, `nope: no registration with MAC or name "nope"`) || !strings.Contains(errOut, "lab-3: state: the registration of") {
		t.Errorf("hosts approve of a rejected and an unknown one = %v, %q, want both reported", err, errOut)
	}
	if h, err := a.db.HostByName(context.Background(), "lab-2"); err != nil || h.Role != "lab" {
		t.Errorf("lab-2 after approval = %+v, %v", h, err)
	}

	// Leases, status, logs.
	a.db.PutLease(context.Background(), store.Lease{IP: netip.MustParseAddr("10.0.0.7"), Subnet: "lab", MAC: "52:54:00:00:00:07", State: store.LeaseBound, Expires: time.Now().Add(time.Hour)})
	out, _, err = runCmd(t, runLeases, "", append(cred, "--json")...)
	var ls []wire.Lease
	if err != nil || json.Unmarshal([]byte(out), &ls) != nil || len(ls) != 1 || ls[0].IP != "10.0.0.7" {
		t.Errorf("leases --json = %q, %v", out, err)
	}
	if out, _, err := runCmd(t, runStatus, "", append(cred, "--url", a.url)...); err != nil || !strings.Contains(out, "mgmt") || !strings.Contains(out, "ready") {
		t.Errorf("status --url = %q, %v", out, err)
	}
	if out, _, err := runCmd(t, runLogs, "", append(cred, "mgmt")...); err != nil || !strings.Contains(out, "[stdout] hello") || !strings.Contains(out, "world") {
		t.Errorf("logs mgmt = %q, %v", out, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	fout := &syncbuf.Buffer{}
	go func() {
		for !strings.Contains(fout.String(), "world") && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
	}()
	if err := runLogs(ctx, append(cred, "-f", "--json", "mgmt"), stdio{strings.NewReader(""), fout, &strings.Builder{}}); err != nil {
		t.Errorf("logs -f = %v", err)
	}
	if !strings.Contains(fout.String(), `"text":"world"`) {
		t.Errorf("logs -f --json printed %q", fout.String())
	}

	// A changed certificate is refused, with exit code 3.
	c.Servers[a.url] = apiclient.ServerCred{User: "admin", Token: c.Servers[a.url].Token, Fingerprint: strings.Repeat("AB:", 31) + "AB"}
	c.Save(creds)
	if _, _, err := runCmd(t, runLeases, "", cred...); !errors.Is(err, apiclient.ErrAuth) || !strings.Contains(err.Error(), "fingerprint") {
		t.Errorf("leases with a wrong pinned fingerprint = %v, want apiclient.ErrAuth about the fingerprint", err)
	}
	// --fingerprint that does not match refuses to log in.
	if _, _, err := runCmd(t, runLogin, a.password+"\n", append(cred, "--url", a.url, "--password-stdin", "--fingerprint", "00:11")...); !errors.Is(err, apiclient.ErrAuth) {
		t.Errorf("login with a wrong --fingerprint = %v, want apiclient.ErrAuth", err)
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh"} {
		out, _, err := runCmd(t, runCompletion, "", shell)
		if err != nil || !strings.Contains(out, "complete -F _kiln kiln") || !strings.Contains(out, "login") || !strings.Contains(out, `hosts) words="list get add rm import export registrations approve reject"`) {
			t.Errorf("completion %s = %v\n%s", shell, err, out)
		}
		if sh, err := exec.LookPath(shell); err == nil && shell == "bash" {
			cmd := exec.Command(sh, "-n")
			cmd.Stdin = strings.NewReader(out)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("bash -n on the completion script: %v\n%s", err, b)
			}
		}
	}
	if _, _, err := runCmd(t, runCompletion, "", "fish"); !errors.Is(err, errUsage) {
		t.Errorf("completion fish = %v, want errUsage", err)
	}
}

func TestPasswordCommand(t *testing.T) {
	state := t.TempDir()
	if _, _, err := runCmd(t, runPassword, "", "show", "--state", state); !errors.Is(err, apiclient.ErrNotFound) {
		t.Errorf("password show before any = %v, want apiclient.ErrNotFound", err)
	}
	pw, _, _ := api.EnsureInitialPassword(state)
	if out, _, err := runCmd(t, runPassword, "", "show", "--state", state); err != nil || !strings.Contains(out, pw) {
		t.Errorf("password show = %q, %v, want %s", out, err, pw)
	}
	out, _, err := runCmd(t, runPassword, "", "reset", "--state", state)
	if err != nil || !strings.Contains(out, "new admin password: ") || strings.Contains(out, pw) {
		t.Errorf("password reset = %q, %v", out, err)
	}
	if _, _, err := runCmd(t, runPassword, "", "forget"); !errors.Is(err, errUsage) {
		t.Errorf("password forget = %v, want errUsage", err)
	}
}
