package orchestrator_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/agent"
	"kiln.dev/kiln/services/vetting/notify"
	"kiln.dev/kiln/services/vetting/orchestrator"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/stages"
	"kiln.dev/kiln/services/vetting/verdict"
)

type fixture struct {
	st   *store.Store
	orch *orchestrator.Orchestrator
	url  string
	log  *slog.Logger
	dir  string
	host store.Host
}

const hostMAC = "52:54:00:00:00:07"

func newFixture(t *testing.T, cfg config.Vetting, spec string) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := st.CreateHost(ctx, store.Host{Name: "node7", MACs: []string{hostMAC}, BootProfile: store.BootVet, ExpectedSpec: spec})
	if err != nil {
		t.Fatal(err)
	}
	log := testlog.New(t, slog.LevelInfo)
	orch := orchestrator.New(st, cfg, dir, log)
	srv := httptest.NewServer(protocol.NewHandler(protocol.Options{Tokens: orch, Backend: orch, Logger: log}))
	t.Cleanup(srv.Close)
	return &fixture{st: st, orch: orch, url: srv.URL, log: log, dir: dir, host: h}
}

// tiny runs every stage for real in a few seconds (see the agent's tests).
func tiny(t *testing.T) *stages.Profile {
	t.Helper()
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, make([]byte, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &stages.Profile{Name: "tiny",
		CPU:     stages.CPU{Duration: 500 * time.Millisecond},
		Memory:  stages.Memory{Bytes: 32 << 20, Patterns: []string{"random"}},
		Storage: stages.Storage{Targets: []stages.Target{{Name: "img", Path: disk}}, Duration: 200 * time.Millisecond},
		Stages:  []string{"cpu", "memory", "storage"},
	}
	return p
}

// boot plays the host's network boot: the script asks for the run's token.
func (f *fixture) boot(t *testing.T) (int64, string) {
	t.Helper()
	id, tok, err := f.orch.BootToken(context.Background(), f.host)
	if err != nil {
		t.Fatalf("BootToken: %v", err)
	}
	return id, tok
}

func (f *fixture) agent(t *testing.T, tok string, p *stages.Profile, hold func(context.Context, agent.HoldRequest) error) (protocol.Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return agent.Run(ctx, agent.Options{ServerURL: f.url, Token: tok, Host: "node7", MAC: hostMAC, Settings: p,
		Logger: f.log, HelloTimeout: 5 * time.Second, Version: "test", Hold: hold, HoldHeartbeat: 100 * time.Millisecond})
}

func (f *fixture) run(t *testing.T, id int64) store.VetRun {
	t.Helper()
	r, err := f.st.VetRunByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRunPasses: auto_run creates a run on the first network boot; the
// agent's stages, measurements, artifacts and verdict land in the database.
func TestRunPasses(t *testing.T) {
	f := newFixture(t, config.Vetting{}, "expect:\n  - fact: cpu.threads\n    min: 1\n")
	id, tok := f.boot(t)
	if r := f.run(t, id); r.State != orchestrator.StateBooting || r.Profile != "quick" {
		t.Fatalf("after boot: %s/%s, want booting/quick", r.State, r.Profile)
	}
	rep, err := f.agent(t, tok, tiny(t), nil)
	if err != nil {
		t.Fatalf("agent: %v", err)
	}
	if rep.Verdict != verdict.Pass {
		t.Fatalf("verdict %s, findings %+v", rep.Verdict, rep.Findings)
	}
	r := f.run(t, id)
	if r.State != orchestrator.StatePassed || r.Active || r.Token != "" || r.SSHPrivate != "" || r.Verdict != "PASS" || r.Ended.IsZero() {
		t.Errorf("run after report = %+v; want passed, inactive, secrets dropped", r)
	}
	ctx := context.Background()
	stages, _ := f.st.VetStages(ctx, id)
	var names []string
	for _, s := range stages {
		names = append(names, s.Name+"="+s.Status)
	}
	if strings.Join(names, ",") != "cpu=PASS,memory=PASS,storage=PASS" {
		t.Errorf("stages = %v", names)
	}
	arts, _ := f.st.VetArtifacts(ctx, id)
	have := map[string]bool{}
	for _, a := range arts {
		have[a.Name] = true
	}
	for _, want := range []string{"inventory.json", "report.json", "report.html", "run.json"} {
		if !have[want] {
			t.Errorf("artifact %s missing (have %v)", want, have)
		}
		if _, err := os.Stat(filepath.Join(f.orch.ArtifactDir(id), want)); err != nil {
			t.Errorf("artifact file: %v", err)
		}
	}
	html, _ := os.ReadFile(filepath.Join(f.orch.ArtifactDir(id), "report.html"))
	if !strings.Contains(string(html), "node7") || !strings.Contains(string(html), "<svg") {
		t.Errorf("report.html lacks the host or its charts")
	}
	// The token is refused with 410 now (the agent powers off), and after
	// the grace period with 401.
	c := &protocol.Client{BaseURL: f.url, Token: tok, RunID: strconv.FormatInt(id, 10)}
	if err := c.Send(ctx, &protocol.Events{Events: []protocol.Event{{Seq: 999, Kind: protocol.EventNote}}}); !errors.Is(err, protocol.ErrGone) {
		t.Errorf("event after the run = %v, want ErrGone", err)
	}
	f.orch.SetClock(func() time.Time { return time.Now().Add(time.Hour) })
	if _, err := f.orch.CheckToken(ctx, tok, time.Now().Add(time.Hour)); !errors.Is(err, protocol.ErrTokenExpired) {
		t.Errorf("token an hour after the run: %v, want expired", err)
	}
	// A passed host boots on: no new run without an operator.
	if _, _, err := f.orch.BootToken(ctx, f.host); !errors.Is(err, orchestrator.ErrNoRun) {
		t.Errorf("second boot: %v, want ErrNoRun", err)
	}
}

// TestBaseline: a run's hello carries the baseline of earlier passed runs
// of its model.
func TestBaseline(t *testing.T) {
	f := newFixture(t, config.Vetting{}, "")
	ctx := context.Background()
	const model = "QEMU Standard PC (Q35 + ICH9, 2009)"
	for i, v := range []float64{100, 110} {
		r, err := f.orch.Start(ctx, orchestrator.StartRequest{Host: "node7"})
		if err != nil {
			t.Fatal(err)
		}
		id := strconv.FormatInt(r.ID, 10)
		a, err := f.orch.Hello(ctx, id, protocol.Hello{Model: model})
		if err != nil {
			t.Fatal(err)
		}
		if (i == 0) != (a.Baseline == nil) {
			t.Fatalf("run %d's baseline = %+v; want none for the first run of the model, one after", i, a.Baseline)
		}
		if i == 1 && (a.Baseline.Model != model || a.Baseline.Stats["cpu.units_per_second"].N != 1 || a.Baseline.Stats["cpu.units_per_second"].Mean != 100) {
			t.Errorf("baseline = %+v, want the first run's 100 units/s", a.Baseline)
		}
		st := verdict.StageResult{Stage: "cpu", Status: verdict.Pass, Measurements: []verdict.Measurement{
			{Name: "cpu.units_per_second", Value: v, Better: verdict.Higher, Status: verdict.Pass}}}
		if err := f.orch.Record(ctx, id, &protocol.Report{RunID: id, Verdict: verdict.Pass, Stages: []verdict.StageResult{st}}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTokens: a wrong token, another run's token and a token of a stopped
// run are refused.
func TestTokens(t *testing.T) {
	f := newFixture(t, config.Vetting{}, "")
	ctx := context.Background()
	id, tok := f.boot(t)
	other, err := f.st.CreateHost(ctx, store.Host{Name: "node8", MACs: []string{"52:54:00:00:00:08"}, BootProfile: store.BootVet})
	if err != nil {
		t.Fatal(err)
	}
	_, tok8, err := f.orch.BootToken(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&protocol.Client{BaseURL: f.url, Token: "nope"}).Hello(ctx, protocol.Hello{}); !errors.Is(err, protocol.ErrRefused) {
		t.Errorf("wrong token: %v", err)
	}
	c8 := &protocol.Client{BaseURL: f.url, Token: tok8, RunID: strconv.FormatInt(id, 10)}
	if err := c8.Send(ctx, &protocol.Events{}); !errors.Is(err, protocol.ErrRefused) {
		t.Errorf("another run's token: %v", err)
	}
	if _, err := f.orch.Stop(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := (&protocol.Client{BaseURL: f.url, Token: tok}).Hello(ctx, protocol.Hello{}); !errors.Is(err, protocol.ErrGone) {
		t.Errorf("stopped run's hello: %v, want gone", err)
	}
	if r := f.run(t, id); r.State != orchestrator.StateStopped || r.Active {
		t.Errorf("stopped run = %s", r.State)
	}
	if _, err := f.orch.Stop(ctx, id); !errors.Is(err, orchestrator.ErrState) {
		t.Errorf("second stop: %v, want ErrState", err)
	}
}

// TestWrongSpecHolds: a spec the machine misses fails the run naming the
// fact; with hold on, the run holds until released, and the agent's hold
// ends with 410.
func TestWrongSpecHolds(t *testing.T) {
	f := newFixture(t, config.Vetting{}, "expect:\n  - fact: memory.installed_bytes\n    min: 64TiB\n")
	ctx := context.Background()
	hold := true
	f.orch.SetHoldPort(2222) // the test's agent announces 127.0.0.1:2222
	r0, err := f.orch.Start(ctx, orchestrator.StartRequest{Host: "node7", Hold: &hold})
	if err != nil {
		t.Fatal(err)
	}
	id, tok := f.boot(t)
	if id != r0.ID {
		t.Fatalf("boot gave run %d, want the started %d", id, r0.ID)
	}
	var once sync.Once
	held := make(chan struct{})
	holdFn := func(ctx context.Context, req agent.HoldRequest) error {
		if req.AuthorizedKey != r0.SSHPublic {
			t.Errorf("hold key %q, want the run's %q", req.AuthorizedKey, r0.SSHPublic)
		}
		if err := req.Announce(ctx, "127.0.0.1:2222", "ssh-ed25519 AAAAtest"); err != nil {
			return err
		}
		once.Do(func() { close(held) })
		return req.Wait(ctx)
	}
	done := make(chan error, 1)
	go func() {
		_, err := f.agent(t, tok, tiny(t), holdFn)
		done <- err
	}()
	select {
	case <-held:
	case err := <-done:
		t.Fatalf("agent ended before holding: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("no hold within a minute")
	}
	v, err := f.orch.RunView(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if v.State != orchestrator.StateHolding || v.Holding == nil || v.Holding.Addr != "127.0.0.1:2222" {
		t.Fatalf("held run view = %+v", v)
	}
	if !strings.Contains(v.Summary, "memory.installed_bytes") || v.Verdict != "FAIL" {
		t.Errorf("summary %q verdict %s, want the memory fact named", v.Summary, v.Verdict)
	}
	if !strings.Contains(v.Holding.SSHCommand, "root@127.0.0.1 ") && !strings.HasSuffix(v.Holding.SSHCommand, "root@127.0.0.1") {
		t.Errorf("ssh command %q", v.Holding.SSHCommand)
	}
	if kh := orchestrator.KnownHosts(f.run(t, id)); kh != "[127.0.0.1]:2222 ssh-ed25519 AAAAtest" {
		t.Errorf("known_hosts %q", kh)
	}
	if _, err := f.orch.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("agent after release: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the agent did not end its hold after the release")
	}
	if r := f.run(t, id); r.State != orchestrator.StateFailed || r.Active || r.SSHPrivate != "" {
		t.Errorf("released run %s active %v", r.State, r.Active)
	}
}

// TestHoldAddrIsTheAgentsAddress: the admin SSH tunnel dials the held
// host's address, so the agent may not choose it: only the address its hello
// came from, port 22, is taken; loopback, another host or another port are
// refused and the run keeps no address to dial.
func TestHoldAddrIsTheAgentsAddress(t *testing.T) {
	f := newFixture(t, config.Vetting{}, "")
	ctx := context.Background()
	hold := true
	if _, err := f.orch.Start(ctx, orchestrator.StartRequest{Host: "node7", Hold: &hold}); err != nil {
		t.Fatal(err)
	}
	id, tok := f.boot(t)
	c := &protocol.Client{BaseURL: f.url, Token: tok} // the agent's hello comes from 127.0.0.1
	if _, err := c.Hello(ctx, protocol.Hello{Protocol: protocol.Version, Addrs: []string{"10.9.0.50/24"}}); err != nil {
		t.Fatal(err)
	}
	runID := strconv.FormatInt(id, 10)
	if err := c.Send(ctx, &protocol.Report{RunID: runID, Verdict: verdict.Fail}); err != nil {
		t.Fatal(err)
	}
	seq := int64(0)
	announce := func(addr string) string {
		t.Helper()
		seq++
		if err := c.Send(ctx, &protocol.Events{Events: []protocol.Event{{Seq: seq, Kind: protocol.EventHolding, Addr: addr,
			HostKey: "ssh-ed25519 AAAAtest", Time: time.Now()}}}); err != nil {
			t.Fatalf("holding event %s: %v", addr, err)
		}
		return f.run(t, id).HoldAddr
	}
	for _, addr := range []string{"127.0.0.1:8443", "10.9.0.50:22", "10.0.0.1:22", "[::1]:22", "127.0.0.1", "kiln.example:22"} {
		if got := announce(addr); got != "" {
			t.Errorf("after announcing %q the tunnel would dial %q, want nothing (not the agent's address, port 22)", addr, got)
		}
	}
	if got := announce("127.0.0.1:22"); got != "127.0.0.1:22" {
		t.Errorf("after announcing the agent's own 127.0.0.1:22 the hold address is %q, want 127.0.0.1:22", got)
	}
	if got := announce("127.0.0.1:2222"); got != "127.0.0.1:22" {
		t.Errorf("a later bad announcement changed the hold address to %q, want 127.0.0.1:22 kept", got)
	}
}

// TestTimeoutsAndNotifications: a host that never boots times out; the
// outcome is notified, retried on failure with backoff, then delivered.
func TestTimeoutsAndNotifications(t *testing.T) {
	f := newFixture(t, config.Vetting{BootTimeout: time.Minute, Notify: []config.Notify{
		{Name: "hook", Webhook: &config.NotifyWebhook{URL: "http://127.0.0.1:1/"}},
		{Name: "only-passed", Webhook: &config.NotifyWebhook{URL: "http://127.0.0.1:1/"}, On: []string{"passed"}},
	}}, "")
	ctx := context.Background()
	now := time.Now()
	f.orch.SetClock(func() time.Time { return now })
	var woke []string
	f.orch.WoL = func(_ context.Context, mac string) error { woke = append(woke, mac); return nil }
	var sent []orchestrator.Notification
	fail := true
	f.orch.Notify = func(_ context.Context, target config.Notify, n orchestrator.Notification) error {
		if fail {
			return errors.New("connection refused")
		}
		sent = append(sent, n)
		return nil
	}
	r, err := f.orch.Start(ctx, orchestrator.StartRequest{Host: "node7"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.orch.Tick(ctx, false); err != nil {
		t.Fatal(err)
	}
	if got := f.run(t, r.ID).State; got != orchestrator.StateWaitingWoL || len(woke) != 1 || woke[0] != hostMAC {
		t.Fatalf("after a tick: %s, woke %v; want waiting_wol and one magic packet to %s", got, woke, hostMAC)
	}
	now = now.Add(2 * time.Minute)
	if err := f.orch.Tick(ctx, false); err != nil {
		t.Fatal(err)
	}
	got := f.run(t, r.ID)
	if got.State != orchestrator.StateTimedOut || !strings.Contains(got.Error, "network-boots") {
		t.Fatalf("after the boot timeout: %s %q", got.State, got.Error)
	}
	ns, _ := f.st.VetNotificationsOfRun(ctx, r.ID)
	if len(ns) != 1 || ns[0].Target != "hook" || ns[0].Attempts != 1 || ns[0].LastErr == "" {
		t.Fatalf("outbox after a failed attempt = %+v; want one for hook, tried once", ns)
	}
	fail = false
	if err := f.orch.Tick(ctx, false); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 0 {
		t.Fatalf("retried before its backoff: %+v", sent)
	}
	now = now.Add(notify.Backoff(1) + time.Second)
	if err := f.orch.Tick(ctx, false); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 1 || sent[0].State != orchestrator.StateTimedOut || sent[0].Host != "node7" {
		t.Fatalf("delivered %+v", sent)
	}
	var msg orchestrator.Notification
	ns, _ = f.st.VetNotificationsOfRun(ctx, r.ID)
	json.Unmarshal([]byte(ns[0].Message), &msg)
	if ns[0].Done.IsZero() || ns[0].Attempts != 2 || msg.RunID != r.ID {
		t.Errorf("outbox after delivery = %+v", ns[0])
	}
}

// TestRetention keeps the newest runs per host and deletes the rest with
// their files.
func TestRetention(t *testing.T) {
	f := newFixture(t, config.Vetting{Retention: config.VetRetention{KeepRuns: 2}}, "")
	ctx := context.Background()
	var ids []int64
	for range 4 {
		r, err := f.orch.Start(ctx, orchestrator.StartRequest{Host: "node7"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.orch.Stop(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	if err := f.orch.Tick(ctx, true); err != nil {
		t.Fatal(err)
	}
	left, _ := f.st.ListVetRuns(ctx, store.VetRunFilter{Host: "node7"})
	if len(left) != 2 || left[0].ID != ids[3] || left[1].ID != ids[2] {
		t.Fatalf("kept %+v, want the two newest", left)
	}
	if _, err := os.Stat(f.orch.ArtifactDir(ids[0])); !os.IsNotExist(err) {
		t.Errorf("pruned run's artifacts still there: %v", err)
	}
	if _, err := os.Stat(f.orch.ArtifactDir(ids[3])); err != nil {
		t.Errorf("kept run's artifacts: %v", err)
	}
}

func TestStartValidates(t *testing.T) {
	f := newFixture(t, config.Vetting{}, "")
	ctx := context.Background()
	for _, tc := range []struct {
		req  orchestrator.StartRequest
		want error
		text string
	}{
		{orchestrator.StartRequest{Host: "nope"}, orchestrator.ErrNotFound, "register it first"},
		{orchestrator.StartRequest{}, orchestrator.ErrInvalid, "host: missing"},
		{orchestrator.StartRequest{Host: "node7", Profile: "fast"}, orchestrator.ErrInvalid, "profile"},
		{orchestrator.StartRequest{Host: "node7", Wipe: true}, orchestrator.ErrInvalid, "confirm_wipe"},
		{orchestrator.StartRequest{Host: "node7", Wipe: true, ConfirmWipe: "node8"}, orchestrator.ErrInvalid, "confirm_wipe"},
	} {
		if _, err := f.orch.Start(ctx, tc.req); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("Start(%+v) = %v, want %v mentioning %q", tc.req, err, tc.want, tc.text)
		}
	}
	r, err := f.orch.Start(ctx, orchestrator.StartRequest{Host: "node7", Wipe: true, ConfirmWipe: "node7"})
	if err != nil || !r.Wipe {
		t.Fatalf("confirmed wipe: %+v %v", r, err)
	}
	if _, err := f.orch.Start(ctx, orchestrator.StartRequest{Host: "node7"}); !errors.Is(err, orchestrator.ErrState) {
		t.Errorf("second run while one is under way: %v, want ErrState", err)
	}
	if runs, _ := f.st.ListVetRuns(ctx, store.VetRunFilter{Host: "node7"}); len(runs) != 1 {
		t.Errorf("%d runs stored, want 1", len(runs))
	}
}
