// Package agent is the vetting agent's main loop as a library: inventory the
// machine, say hello to the orchestrator, diff the inventory against the
// expected spec, run the assigned profile's stages while streaming events,
// judge the run and send the report. cmd/kiln-agent wraps it for the live
// image; tests run it against a loopback orchestrator.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kiln.dev/kiln/services/vetting/inventory"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/spec"
	"kiln.dev/kiln/services/vetting/stages"
	"kiln.dev/kiln/services/vetting/verdict"
)

// Options configure one agent run.
type Options struct {
	// ServerURL is the appliance ("http://10.0.0.1"), Token the run's bearer
	// token; both come from the kernel command line (kiln.server,
	// kiln.token).
	ServerURL string
	Token     string
	// Host and MAC are the boot script's kiln.host and kiln.mac, reported in
	// Hello.
	Host, MAC string
	// Root is the machine's root for /sys and /proc (default "/"); Dev holds
	// the device nodes (default Root/dev).
	Root string
	Dev  string
	// Profile overrides the assignment's profile name; Settings overrides
	// the profile entirely (tests use tiny sizes, files and lo).
	Profile  string
	Settings *stages.Profile
	// NVMe and ATA probe disks (default inventory.Devices{Dev}).
	NVMe inventory.NVMeProber
	ATA  inventory.ATAProber
	// HTTPClient sends messages (default: 30 s timeout per request).
	HTTPClient *http.Client
	// Logger gets the agent's log (default: discarded).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Version is reported in Hello and the report.
	Version string
	// HelloTimeout bounds how long hello is retried while the appliance is
	// unreachable (default 10 minutes).
	HelloTimeout time.Duration
	// Hold is called when the run failed and the assignment asks to hold
	// the host: it serves SSH with the run's key, announces itself and
	// returns once req.Wait does (the operator released the host). Nil:
	// no hold.
	Hold func(ctx context.Context, req HoldRequest) error
	// HoldHeartbeat is how often a holding agent repeats its holding event
	// (default protocol.HoldHeartbeat).
	HoldHeartbeat time.Duration
	// Addrs lists the machine's IPv4 addresses with prefix for Hello
	// (default InterfaceAddrs).
	Addrs func() []string
	// Assigned, when set, is called with the assignment once hello
	// succeeded: the live image learns Assignment.After from it.
	Assigned func(protocol.Assignment)
}

// ErrOptions is wrapped by errors about missing or malformed options.
var ErrOptions = errors.New("agent options")

func (o *Options) defaults() error {
	if o.ServerURL == "" {
		return fmt.Errorf("%w: no server URL (kiln.server= on the kernel command line, or --server)", ErrOptions)
	}
	if o.Token == "" {
		return fmt.Errorf("%w: no run token (kiln.token= on the kernel command line, or --token)", ErrOptions)
	}
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Dev == "" {
		o.Dev = filepath.Join(o.Root, "dev")
	}
	if o.NVMe == nil {
		o.NVMe = inventory.Devices{Dir: o.Dev}
	}
	if o.ATA == nil {
		o.ATA = inventory.Devices{Dir: o.Dev}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HelloTimeout <= 0 {
		o.HelloTimeout = 10 * time.Minute
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Addrs == nil {
		o.Addrs = InterfaceAddrs
	}
	return nil
}

// Run runs the agent once and returns the report it sent. The error says why
// no report could be sent (bad options, the orchestrator unreachable or
// refusing the token, the run stopped by the operator).
func Run(ctx context.Context, o Options) (protocol.Report, error) {
	if err := o.defaults(); err != nil {
		return protocol.Report{}, err
	}
	log := o.Logger
	started := o.Now()
	inv, err := inventory.Collect(ctx, inventory.Config{Root: o.Root, NVMe: o.NVMe, ATA: o.ATA})
	if err != nil {
		return protocol.Report{}, err
	}
	for _, w := range inv.Warnings {
		log.Info("inventory", "warning", w)
	}

	client := &protocol.Client{BaseURL: o.ServerURL, Token: o.Token, HTTP: o.HTTPClient}
	hello := protocol.Hello{AgentVersion: o.Version, Host: o.Host, MAC: o.MAC, Kernel: inv.Kernel,
		BootID: readTrim(filepath.Join(o.Root, "proc/sys/kernel/random/boot_id")),
		Model:  strings.TrimSpace(inv.System.Manufacturer + " " + inv.System.Product), Addrs: o.Addrs()}
	for _, n := range inv.NICs {
		hello.MACs = append(hello.MACs, n.MAC)
	}
	hctx, cancel := context.WithTimeout(ctx, o.HelloTimeout)
	a, err := client.Hello(hctx, hello)
	cancel()
	if err != nil {
		return protocol.Report{}, err
	}
	log = log.With("run", a.RunID)
	log.Info("assigned", "profile", a.Profile, "wipeable", a.Wipeable, "deadline", a.Deadline)
	if o.Assigned != nil {
		o.Assigned(a)
	}

	// Everything below runs under a context the event sender can cancel when
	// the orchestrator says the run is over.
	rctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	if !a.Deadline.IsZero() {
		// The token dies with the run: nothing could be reported after it.
		var cancelDeadline context.CancelFunc
		rctx, cancelDeadline = context.WithDeadline(rctx, a.Deadline)
		defer cancelDeadline()
	}
	events := newEventQueue(client, o.Now, log, stop)
	ectx, stopEvents := context.WithCancel(rctx)
	defer stopEvents()
	sent := make(chan struct{})
	go events.run(ectx, sent)

	expected, specProblem := parseSpec(a.Spec)
	diff := spec.Diff(expected, inv.Facts())
	if specProblem != nil {
		diff = append(diff, *specProblem)
		events.note(specProblem.Problem)
	}
	if err := client.Send(rctx, &protocol.Inventory{Inventory: inv, Diff: diff}); err != nil {
		return protocol.Report{}, stopCause(rctx, err)
	}

	profile, err := choose(o, a)
	if err != nil {
		events.note(err.Error())
		log.Error("no profile", "error", err)
	}
	var results []verdict.StageResult
	if err == nil {
		plan, perr := stages.Plan(profile, machine(o, a, inv, expected, client))
		if perr != nil {
			events.note(perr.Error())
			err = perr
		}
		runner := &stages.Runner{Env: stages.Env{Root: o.Root, Logger: log, Now: o.Now}, Emit: events.stage}
		results = runner.Run(rctx, plan)
	}
	if err != nil {
		// A profile that cannot run is the orchestrator's mistake, not the
		// machine's: report it as an errored stage.
		results = append(results, verdict.StageResult{Stage: "plan", Status: verdict.Error, Started: o.Now(),
			Ended: o.Now(), Measurements: []verdict.Measurement{}, Error: err.Error(), Summary: err.Error()})
	}
	if a.Baseline != nil {
		results = verdict.ApplyBaselineToStages(results, *a.Baseline, verdict.Policy{})
	}
	status, findings := verdict.Run(diff, results)
	report := protocol.Report{RunID: a.RunID, AgentVersion: o.Version, Profile: profile.Name, Started: started,
		Ended: o.Now(), Inventory: inv, Diff: diff, Stages: results, Verdict: status, Findings: findings,
		Baseline: a.Baseline}
	if report.Findings == nil {
		report.Findings = []verdict.Finding{}
	}
	log.Info("verdict", "status", status, "findings", len(findings))

	// The report goes out even when ctx ended (the operator stopped the
	// run, or the agent is shutting down), with a bounded wait of its own.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	stopEvents()
	<-sent
	if cause := context.Cause(rctx); errors.Is(cause, protocol.ErrGone) || errors.Is(cause, protocol.ErrRefused) {
		return report, cause
	}
	events.flush(fctx)
	if err := client.Send(fctx, &report); err != nil {
		return report, err
	}
	if status == verdict.Fail && a.HoldOnFailure && o.Hold != nil && a.HoldKey != "" {
		log.Info("holding the host for the operator")
		h := newHolder(events, o.HoldHeartbeat)
		events.stop = h.release
		return report, o.Hold(ctx, HoldRequest{Report: report, AuthorizedKey: a.HoldKey, Announce: h.announce, Wait: h.wait})
	}
	return report, nil
}

// stopCause prefers the reason the run was stopped over the error it caused.
func stopCause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return err
}

// parseSpec parses the assignment's spec; a spec that does not parse becomes
// one invalid result, so the run says ERROR and names the problem.
func parseSpec(doc string) (spec.Spec, *spec.Result) {
	s, err := spec.Parse([]byte(doc))
	if err == nil {
		return s, nil
	}
	return spec.Spec{}, &spec.Result{Fact: "(expected spec)", Severity: spec.SeverityFail, Status: spec.StatusInvalid,
		Expected: "a valid expected spec", Problem: fmt.Sprintf("the host's expected spec cannot be used: %v", err)}
}

// choose picks the profile: the agent's override, the assignment's settings,
// or the named profile.
func choose(o Options, a protocol.Assignment) (stages.Profile, error) {
	switch {
	case o.Settings != nil:
		return *o.Settings, nil
	case o.Profile != "":
		return stages.ProfileByName(o.Profile)
	case a.Settings != nil:
		return *a.Settings, nil
	case a.Profile == "":
		return stages.ProfileByName(stages.Quick)
	}
	return stages.ProfileByName(a.Profile)
}

// machine describes the host for stages.Plan: every fixed disk and every NIC
// with carrier, the spec's link speed, the run's wipe permission.
func machine(o Options, a protocol.Assignment, inv inventory.Inventory, s spec.Spec, c *protocol.Client) stages.Machine {
	m := stages.Machine{
		SMART:      inventory.SMARTReader{Disks: inv.Disks, NVMe: o.NVMe, ATA: o.ATA},
		Throughput: c,
		Wipeable:   a.Wipeable,
	}
	for _, d := range inv.Disks {
		if !d.Removable {
			m.Disks = append(m.Disks, stages.Target{Name: d.Name, Path: filepath.Join(o.Dev, d.Name), Size: d.SizeBytes})
		}
	}
	all, _ := s.MinOf("nics.speed_mbps", spec.UnitMbps)
	for _, n := range inv.NICs {
		if !n.Carrier {
			continue
		}
		want := all
		if v, ok := s.MinOf("nic."+n.Name+".speed_mbps", spec.UnitMbps); ok {
			want = v
		}
		m.NICs = append(m.NICs, stages.NIC{Name: n.Name, MinMbps: want})
	}
	return m
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
