package agent_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/services/vetting/agent"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/stages"
	"kiln.dev/kiln/services/vetting/verdict"
)

// orchestrator is a small real Backend: it hands out one assignment and
// keeps every message.
type orchestrator struct {
	assignment protocol.Assignment
	// goneAfter, when > 0, answers ErrRunOver from that many event batches on;
	// goneAfterHolding from that many holding events on.
	goneAfter, goneAfterHolding int

	mu sync.Mutex
	// hello, inventory, events, batches and report are guarded by mu.
	hello     *protocol.Hello
	inventory *protocol.Inventory
	events    []protocol.Event
	batches   int
	holding   int
	report    *protocol.Report
}

func (o *orchestrator) Hello(_ context.Context, run string, h protocol.Hello) (protocol.Assignment, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.hello = &h
	return o.assignment, nil
}

func (o *orchestrator) Record(_ context.Context, run string, m protocol.Message) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch m := m.(type) {
	case *protocol.Inventory:
		o.inventory = m
	case *protocol.Events:
		o.batches++
		if o.goneAfter > 0 && o.batches >= o.goneAfter {
			return protocol.ErrRunOver
		}
		for _, e := range m.Events {
			if e.Kind == protocol.EventHolding {
				o.holding++
			}
		}
		if o.goneAfterHolding > 0 && o.holding >= o.goneAfterHolding {
			return protocol.ErrRunOver
		}
		o.events = append(o.events, m.Events...)
	case *protocol.Report:
		o.report = m
	}
	return nil
}

// serve starts the protocol server on loopback and returns agent options
// holding a valid token of run-7.
func serve(t *testing.T, o *orchestrator) agent.Options {
	t.Helper()
	tokens := protocol.NewTokens()
	tok, err := tokens.Issue("run-7", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	log := testlog.New(t, slog.LevelInfo)
	srv := httptest.NewServer(protocol.NewHandler(protocol.Options{Tokens: tokens, Backend: o,
		Logger: log.With("component", "vetting")}))
	t.Cleanup(srv.Close)
	return agent.Options{ServerURL: srv.URL, Token: tok, Host: "node7", MAC: "52:54:00:00:00:07",
		Logger: log.With("component", "vetting-agent"), HelloTimeout: 5 * time.Second, Version: "test"}
}

// tiny is a profile that runs every stage for real in a few seconds: a 1 s
// CPU load, 64 MiB of memory, a 16 MiB file as the disk and lo as the NIC
// (bound to lo only as root).
func tiny(t *testing.T) *stages.Profile {
	t.Helper()
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, make([]byte, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &stages.Profile{Name: "tiny",
		CPU:     stages.CPU{Duration: time.Second},
		Memory:  stages.Memory{Bytes: 64 << 20, Patterns: []string{"random", "address"}},
		Storage: stages.Storage{Targets: []stages.Target{{Name: "img", Path: disk}}, Duration: 200 * time.Millisecond},
		Network: stages.Network{Targets: []stages.NIC{{Name: "lo"}}, Duration: 200 * time.Millisecond},
	}
	if os.Geteuid() != 0 {
		t.Log("not root: leaving out the network stage (binding to lo needs CAP_NET_RAW)")
		p.Stages = []string{"cpu", "memory", "storage"}
	}
	return p
}

func run(t *testing.T, o agent.Options) (protocol.Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return agent.Run(ctx, o)
}

func TestRunPasses(t *testing.T) {
	orch := &orchestrator{assignment: protocol.Assignment{Profile: "quick", Spec: `
expect:
  - fact: cpu.threads
    min: 1
  - fact: memory.usable_bytes
    min: 64MiB
`}}
	o := serve(t, orch)
	o.Settings = tiny(t)
	report, err := run(t, o)
	if err != nil {
		t.Fatalf("agent.Run: %v", err)
	}
	if report.Verdict != verdict.Pass || len(report.Findings) != 0 {
		t.Fatalf("verdict = %s with findings %+v, want PASS", report.Verdict, report.Findings)
	}
	orch.mu.Lock()
	defer orch.mu.Unlock()
	if orch.hello == nil || orch.hello.Host != "node7" || orch.hello.Kernel == "" {
		t.Errorf("hello = %+v, want host node7 with the kernel release", orch.hello)
	}
	if orch.inventory == nil || len(orch.inventory.Diff) != 2 || !orch.inventory.Diff[0].OK() || orch.inventory.Inventory.CPU.Threads < 1 {
		t.Errorf("inventory message = %+v, want the inventory and a 2-item diff that matches", orch.inventory)
	}
	if orch.report == nil || orch.report.RunID != "run-7" || orch.report.Verdict != verdict.Pass {
		t.Fatalf("orchestrator report = %+v, want run-7 PASS", orch.report)
	}
	var names []string
	for _, s := range orch.report.Stages {
		names = append(names, s.Stage+":"+string(s.Status))
	}
	want := []string{"cpu:PASS", "memory:PASS", "storage:PASS", "network:PASS"}
	if len(o.Settings.Stages) > 0 {
		want = want[:3]
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("reported stages (-want +got):\n%s", diff)
	}
	// Events: numbered from 1 without gaps, a start and an end per stage,
	// each end carrying the stage's measurements.
	var starts, ends int
	for i, e := range orch.events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d, want %d (events %+v)", i, e.Seq, i+1, orch.events)
		}
		switch e.Kind {
		case protocol.EventStageStart:
			starts++
			if e.Timeout <= 0 {
				t.Errorf("stage_start of %s without a timeout", e.Stage)
			}
		case protocol.EventStageEnd:
			ends++
			if e.Result == nil || len(e.Result.Measurements) == 0 {
				t.Errorf("stage_end of %s without measurements", e.Stage)
			}
		}
	}
	if starts != len(want) || ends != len(want) {
		t.Errorf("events: %d starts and %d ends, want %d of each", starts, ends, len(want))
	}
}

func TestRunFailsNamingTheDifference(t *testing.T) {
	orch := &orchestrator{assignment: protocol.Assignment{Spec: "expect:\n  - fact: memory.usable_bytes\n    min: 64TiB\n"}}
	o := serve(t, orch)
	o.Settings = &stages.Profile{Name: "cpu-only", Stages: []string{"cpu"}, CPU: stages.CPU{Duration: 200 * time.Millisecond}}
	report, err := run(t, o)
	if err != nil {
		t.Fatal(err)
	}
	if report.Verdict != verdict.Fail || len(report.Findings) != 1 ||
		!strings.HasPrefix(report.Findings[0].Message, "memory.usable_bytes: expected ≥ 64 TiB, got ") {
		t.Errorf("verdict = %s, findings %+v; want FAIL naming memory.usable_bytes", report.Verdict, report.Findings)
	}
}

func TestToolErrorIsNotAFailure(t *testing.T) {
	orch := &orchestrator{}
	o := serve(t, orch)
	o.Settings = &stages.Profile{Name: "broken disk", Stages: []string{"storage"},
		Storage: stages.Storage{Targets: []stages.Target{{Name: "sdz", Path: "/nonexistent/sdz"}}, Duration: 100 * time.Millisecond}}
	report, err := run(t, o)
	if err != nil {
		t.Fatal(err)
	}
	if report.Verdict != verdict.Error || report.Stages[0].Status != verdict.Error {
		t.Errorf("verdict with an unopenable disk = %s (stage %s), want ERROR, not FAIL", report.Verdict, report.Stages[0].Status)
	}
}

func TestBadSpecIsAnError(t *testing.T) {
	orch := &orchestrator{assignment: protocol.Assignment{Spec: "expect:\n  - fact: cpu.threads\n    atleast: 4\n"}}
	o := serve(t, orch)
	o.Settings = &stages.Profile{Name: "cpu-only", Stages: []string{"cpu"}, CPU: stages.CPU{Duration: 100 * time.Millisecond}}
	report, err := run(t, o)
	if err != nil {
		t.Fatal(err)
	}
	if report.Verdict != verdict.Error || len(report.Findings) == 0 || !strings.Contains(report.Findings[0].Message, "expect[0].atleast") {
		t.Errorf("verdict with a malformed spec = %s, findings %+v; want ERROR naming expect[0].atleast", report.Verdict, report.Findings)
	}
	orch.mu.Lock()
	defer orch.mu.Unlock()
	var noted bool
	for _, e := range orch.events {
		noted = noted || e.Kind == protocol.EventNote && strings.Contains(e.Note, "atleast")
	}
	if !noted {
		t.Error("no note event tells the operator the spec is malformed")
	}
}

func TestRunStoppedByTheOrchestrator(t *testing.T) {
	orch := &orchestrator{goneAfter: 1, assignment: protocol.Assignment{Deadline: time.Now().Add(time.Hour)}}
	o := serve(t, orch)
	o.Settings = &stages.Profile{Name: "long", Stages: []string{"cpu"}, CPU: stages.CPU{Duration: time.Minute}}
	start := time.Now()
	_, err := run(t, o)
	if !errors.Is(err, protocol.ErrGone) {
		t.Errorf("agent.Run on a stopped run error = %v, want ErrGone", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the agent took %v to notice the run was stopped", took)
	}
	orch.mu.Lock()
	defer orch.mu.Unlock()
	if orch.report != nil {
		t.Error("the agent sent a report for a stopped run")
	}
}

func TestRefusedToken(t *testing.T) {
	o := serve(t, &orchestrator{})
	o.Token = "stolen"
	if _, err := run(t, o); !errors.Is(err, protocol.ErrRefused) {
		t.Errorf("agent.Run with a wrong token error = %v, want ErrRefused", err)
	}
	o.Token = ""
	if _, err := run(t, o); !errors.Is(err, agent.ErrOptions) {
		t.Errorf("agent.Run without a token error = %v, want ErrOptions", err)
	}
}

func TestHoldOnFailure(t *testing.T) {
	orch := &orchestrator{assignment: protocol.Assignment{HoldOnFailure: true, HoldKey: "ssh-ed25519 AAAAkey run",
		Spec: "expect:\n  - fact: cpu.threads\n    min: 100000\n"}, goneAfterHolding: 3}
	o := serve(t, orch)
	o.Settings = &stages.Profile{Name: "cpu-only", Stages: []string{"cpu"}, CPU: stages.CPU{Duration: 100 * time.Millisecond}}
	o.HoldHeartbeat = 50 * time.Millisecond
	var held *HoldSeen
	o.Hold = func(ctx context.Context, req agent.HoldRequest) error {
		held = &HoldSeen{report: req.Report, key: req.AuthorizedKey}
		if err := req.Announce(ctx, "127.0.0.1:22", "ssh-ed25519 AAAAhost"); err != nil {
			return err
		}
		return req.Wait(ctx) // the orchestrator answers 410 at the third heartbeat
	}
	if _, err := run(t, o); err != nil {
		t.Fatal(err)
	}
	if held == nil || held.report.Verdict != verdict.Fail || held.key != "ssh-ed25519 AAAAkey run" {
		t.Fatalf("Hold called with %+v, want the failed report and the run's key", held)
	}
	orch.mu.Lock()
	defer orch.mu.Unlock()
	var holding []protocol.Event
	for _, e := range orch.events {
		if e.Kind == protocol.EventHolding {
			holding = append(holding, e)
		}
	}
	if len(holding) < 1 || holding[0].Addr != "127.0.0.1:22" || holding[0].HostKey != "ssh-ed25519 AAAAhost" {
		t.Fatalf("holding events %+v, want the SSH address and host key", holding)
	}
	for i := 1; i < len(orch.events); i++ {
		if orch.events[i].Seq != orch.events[i-1].Seq+1 {
			t.Fatalf("event seqs not consecutive at %d: %d after %d", i, orch.events[i].Seq, orch.events[i-1].Seq)
		}
	}
}

// HoldSeen is what the hold hook was given.
type HoldSeen struct {
	report protocol.Report
	key    string
}

func TestNoHoldWithoutKey(t *testing.T) {
	orch := &orchestrator{assignment: protocol.Assignment{HoldOnFailure: true,
		Spec: "expect:\n  - fact: cpu.threads\n    min: 100000\n"}}
	o := serve(t, orch)
	o.Settings = &stages.Profile{Name: "cpu-only", Stages: []string{"cpu"}, CPU: stages.CPU{Duration: 100 * time.Millisecond}}
	o.Hold = func(context.Context, agent.HoldRequest) error { t.Error("held without a key"); return nil }
	if _, err := run(t, o); err != nil {
		t.Fatal(err)
	}
}

func TestBaselineApplied(t *testing.T) {
	b := verdict.Baseline{Model: "QEMU", Runs: 3, Stats: map[string]verdict.Stats{
		"cpu.units_per_second": {N: 3, Mean: 1e12, Stddev: 1}, // far faster than any real CPU
	}}
	orch := &orchestrator{assignment: protocol.Assignment{Baseline: &b}}
	o := serve(t, orch)
	o.Settings = &stages.Profile{Name: "cpu-only", Stages: []string{"cpu"}, CPU: stages.CPU{Duration: 200 * time.Millisecond}}
	report, err := run(t, o)
	if err != nil {
		t.Fatal(err)
	}
	if report.Verdict != verdict.Degraded || report.Baseline == nil {
		t.Errorf("verdict against an impossible baseline = %s, want DEGRADED with the baseline in the report", report.Verdict)
	}
}

func TestParseCmdline(t *testing.T) {
	got := agent.ParseCmdline("initrd=initrd kiln.mode=vet kiln.server=http://10.0.0.1:8080 kiln.host=node7 " +
		"kiln.mac=52:54:00:00:00:07 kiln.token=abc-_~.1 console=ttyS0 kiln.profile=standard kiln.host=node8\n")
	want := agent.Cmdline{Server: "http://10.0.0.1:8080", Token: "abc-_~.1", Host: "node8", MAC: "52:54:00:00:00:07", Profile: "standard"}
	if got != want {
		t.Errorf("ParseCmdline = %+v, want %+v", got, want)
	}
}
