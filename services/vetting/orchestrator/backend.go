package orchestrator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"kiln.dev/kiln/internal/atomicfile"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/verdict"
)

// Budgets bound a run from its agent's hello to its report, per profile:
// the stages' own timeouts sum to well below these on machines with a
// dozen disks. A run past its budget is timed out and its token refused.
var Budgets = map[string]time.Duration{"quick": time.Hour, "standard": 4 * time.Hour, "extended": 24 * time.Hour}

// gone is how long after its end a run's token still gets 410 (so its agent
// learns the run is over and powers off) instead of 401.
const gone = 30 * time.Minute

// CheckToken implements protocol.TokenChecker over the database.
func (o *Orchestrator) CheckToken(ctx context.Context, token string, now time.Time) (string, error) {
	r, err := o.st.VetRunByTokenHash(ctx, protocol.HashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return "", protocol.ErrUnknownToken
	}
	if err != nil {
		return "", err
	}
	if !r.Active && now.Sub(r.Ended) > gone {
		return "", protocol.ErrTokenExpired
	}
	return strconv.FormatInt(r.ID, 10), nil
}

// CheckSource implements protocol.SourceChecker: once a run's agent said
// hello, the run's token works only from that address.
func (o *Orchestrator) CheckSource(ctx context.Context, runID string, from netip.Addr) error {
	id, err := ParseRunID(runID)
	if err != nil {
		return err
	}
	r, err := o.st.VetRunByID(ctx, id)
	if err != nil {
		return err
	}
	if r.AgentSource == "" || (from.IsValid() && from.String() == r.AgentSource) {
		return nil
	}
	return fmt.Errorf("%w: run %d's agent said hello from %s; this request came from %s", protocol.ErrWrongSource, r.ID, r.AgentSource, from)
}

// Hello implements protocol.Backend: the agent of a queued or booting run
// (or one that rebooted while running) gets its assignment.
func (o *Orchestrator) Hello(ctx context.Context, runID string, h protocol.Hello) (protocol.Assignment, error) {
	id, err := ParseRunID(runID)
	if err != nil {
		return protocol.Assignment{}, err
	}
	var a protocol.Assignment
	r, err := o.change(ctx, id, func(r *store.VetRun, u *store.VetUpdate) error {
		if !r.Active || r.State == StateHolding || r.Verdict != "" {
			return protocol.ErrRunOver
		}
		// The run's token is bound to its first hello's address (checked
		// here too, in the transaction, against a race of two hellos).
		if r.AgentSource != "" && h.Source.String() != r.AgentSource {
			return fmt.Errorf("%w: run %d's agent said hello from %s; this hello came from %s", protocol.ErrWrongSource, r.ID, r.AgentSource, h.Source)
		}
		now := o.now()
		if r.State == StateRunning && r.BootID != "" && h.BootID != r.BootID {
			// The host rebooted mid-run: its agent starts over.
			u.Events = append(u.Events, noteEvent(r, now, "the host rebooted during the run; the agent starts over"))
			r.EventSeq = 0
		}
		r.State, r.Started, r.BootID = StateRunning, now, h.BootID
		r.AgentAddr = strings.Join(h.Addrs, " ")
		if h.Source.IsValid() {
			r.AgentSource = h.Source.String()
		}
		if h.Model != "" {
			r.Model = h.Model
		}
		r.Deadline = now.Add(budget(r.Profile))
		r.Stage, r.Progress = "", 0
		a = protocol.Assignment{RunID: runID, Profile: r.Profile, Wipeable: r.Wipe, Spec: r.Spec,
			HoldOnFailure: r.Hold, Deadline: r.Deadline, After: o.cfg.AfterOrDefault()}
		if r.Hold {
			a.HoldKey = r.SSHPublic
		}
		return nil
	})
	if err != nil {
		return protocol.Assignment{}, err
	}
	if r.Model != "" {
		b, err := o.baseline(ctx, r)
		if err != nil {
			o.log.Warn("no baseline", "run", r.ID, "model", r.Model, "err", err)
		} else if b != nil {
			a.Baseline = b
		}
	}
	o.log.Info("agent says hello", "run", r.ID, "host", r.Host, "addrs", h.Addrs, "model", r.Model)
	return a, nil
}

// noteEvent is a note from kiln itself in a run's event stream (Seq 0:
// outside the agent's numbering).
func noteEvent(r *store.VetRun, t time.Time, note string) store.VetEvent {
	body, _ := json.Marshal(protocol.Event{Time: t, Kind: protocol.EventNote, Note: note})
	return store.VetEvent{Kind: string(protocol.EventNote), Body: string(body), Time: t}
}

func budget(profile string) time.Duration {
	if b, ok := Budgets[profile]; ok {
		return b
	}
	return Budgets["extended"]
}

// baseline builds the model's baseline from its earlier passed runs (nil
// when there are none).
func (o *Orchestrator) baseline(ctx context.Context, r store.VetRun) (*verdict.Baseline, error) {
	ms, err := o.st.VetMeasurementsOfModel(ctx, r.Model, string(verdict.Pass), r.ID, 20)
	if err != nil || len(ms) == 0 {
		return nil, err
	}
	var runs [][]verdict.Measurement
	last := int64(-1)
	for _, m := range ms {
		if m.RunID != last {
			runs = append(runs, nil)
			last = m.RunID
		}
		runs[len(runs)-1] = append(runs[len(runs)-1], verdict.Measurement{Name: m.Name, Value: m.Value, Unit: m.Unit,
			Better: verdict.Direction(m.Better), Status: verdict.Status(m.Status)})
	}
	b := verdict.NewBaseline(r.Model, runs)
	return &b, nil
}

// Record implements protocol.Backend.
func (o *Orchestrator) Record(ctx context.Context, runID string, m protocol.Message) error {
	id, err := ParseRunID(runID)
	if err != nil {
		return err
	}
	switch m := m.(type) {
	case *protocol.Inventory:
		return o.recordInventory(ctx, id, m)
	case *protocol.Events:
		return o.recordEvents(ctx, id, m)
	case *protocol.Report:
		return o.recordReport(ctx, id, m)
	}
	return fmt.Errorf("unknown message %T", m)
}

func (o *Orchestrator) recordInventory(ctx context.Context, id int64, m *protocol.Inventory) error {
	art, err := o.writeArtifact(id, "inventory.json", m)
	if err != nil {
		return err
	}
	_, err = o.change(ctx, id, func(r *store.VetRun, u *store.VetUpdate) error {
		if !r.Active || r.State != StateRunning {
			return protocol.ErrRunOver
		}
		if model := ModelOf(m.Inventory.System.Manufacturer, m.Inventory.System.Product); model != "" {
			r.Model = model
		}
		u.Artifacts = append(u.Artifacts, art)
		return nil
	})
	return err
}

// ModelOf is the baseline key of a machine: manufacturer and product.
func ModelOf(manufacturer, product string) string {
	return strings.TrimSpace(strings.TrimSpace(manufacturer) + " " + strings.TrimSpace(product))
}

func (o *Orchestrator) recordEvents(ctx context.Context, id int64, m *protocol.Events) error {
	_, err := o.change(ctx, id, func(r *store.VetRun, u *store.VetUpdate) error {
		holding := r.State == StateHolding || (r.Active && r.Hold && r.Verdict == string(verdict.Fail))
		if !r.Active || (r.State != StateRunning && !holding) {
			return protocol.ErrRunOver
		}
		now := o.now()
		for _, e := range m.Events {
			if e.Seq <= r.EventSeq {
				continue // a retried batch
			}
			// The tunnel dials a held host's address: the agent may only
			// name its own (its hello's source), on the SSH port. A refused
			// announcement is not stored, so no view or report shows it.
			if want := o.holdAddr(*r); e.Kind == protocol.EventHolding && e.Addr != want {
				o.log.Warn("refused a hold address that is not the agent's own", "run", r.ID, "announced", e.Addr, "want", want)
				continue
			}
			body, err := json.Marshal(e)
			if err != nil {
				return err
			}
			u.Events = append(u.Events, store.VetEvent{Seq: e.Seq, Kind: string(e.Kind), Body: string(body), Time: e.Time})
			switch e.Kind {
			case protocol.EventStageStart:
				r.Stage, r.Progress = e.Stage, 0
				u.Stages = append(u.Stages, store.VetStage{Name: e.Stage, Status: "RUNNING", Started: e.Time})
			case protocol.EventStageProgress:
				r.Stage, r.Progress = e.Stage, e.Fraction
			case protocol.EventStageEnd:
				if e.Result != nil {
					u.Stages = append(u.Stages, stageRow(*e.Result))
					u.Measurements = append(u.Measurements, measurementRows(*e.Result)...)
				}
				r.Progress = 1
			case protocol.EventHolding:
				if !holding {
					continue
				}
				r.State, r.HoldAddr, r.HoldHostKey, r.Heartbeat = StateHolding, e.Addr, e.HostKey, now
			}
		}
		return nil
	})
	return err
}

// holdAddr is the only SSH address a held run may announce: its agent's
// source address, port 22 ("" when the source is unknown).
func (o *Orchestrator) holdAddr(r store.VetRun) string {
	if r.AgentSource == "" {
		return ""
	}
	return net.JoinHostPort(r.AgentSource, strconv.Itoa(o.holdPort))
}

func stageRow(s verdict.StageResult) store.VetStage {
	return store.VetStage{Name: s.Stage, Status: string(s.Status), Summary: s.Summary, Error: s.Error,
		Started: s.Started, Ended: s.Ended}
}

func measurementRows(s verdict.StageResult) []store.VetMeasurement {
	var out []store.VetMeasurement
	for _, m := range s.Measurements {
		out = append(out, store.VetMeasurement{Stage: s.Stage, Name: m.Name, Value: m.Value, Unit: m.Unit,
			Better: string(m.Better), Status: string(m.Status)})
	}
	return out
}

// stateOf maps a verdict to the run's end state.
func stateOf(v verdict.Status) string {
	switch v {
	case verdict.Pass, verdict.Degraded:
		return StatePassed
	case verdict.Fail:
		return StateFailed
	case verdict.Timeout:
		return StateTimedOut
	}
	return StateError
}

func (o *Orchestrator) recordReport(ctx context.Context, id int64, m *protocol.Report) error {
	art, err := o.writeArtifact(id, "report.json", m)
	if err != nil {
		return err
	}
	r, err := o.change(ctx, id, func(r *store.VetRun, u *store.VetUpdate) error {
		if !r.Active || r.State != StateRunning {
			return protocol.ErrRunOver
		}
		findings, _ := json.Marshal(m.Findings)
		r.Verdict, r.Findings = string(m.Verdict), string(findings)
		r.Summary = reportSummary(m)
		if model := ModelOf(m.Inventory.System.Manufacturer, m.Inventory.System.Product); model != "" {
			r.Model = model
		}
		r.Ended = o.now()
		u.Artifacts = append(u.Artifacts, art)
		for _, s := range m.Stages {
			u.Stages = append(u.Stages, stageRow(s))
			u.Measurements = append(u.Measurements, measurementRows(s)...)
		}
		state := stateOf(m.Verdict)
		if state == StateFailed && r.Hold {
			// The agent says where it listens in its first holding event.
			r.State, r.Stage, r.Progress, r.Heartbeat = StateHolding, "", 0, r.Ended
			r.Token = ""
			o.queueNotifications(r, u, StateHolding)
			return nil
		}
		o.end(r, u, state, "")
		return nil
	})
	if err != nil {
		return err
	}
	o.log.Info("run reported", "run", id, "host", r.Host, "verdict", m.Verdict, "state", r.State, "summary", r.Summary)
	return nil
}

// reportSummary is the run's one line: the verdict and its first findings.
func reportSummary(m *protocol.Report) string {
	s := string(m.Verdict)
	var msgs []string
	for _, f := range m.Findings {
		if len(msgs) == 3 {
			msgs = append(msgs, fmt.Sprintf("and %d more", len(m.Findings)-3))
			break
		}
		msgs = append(msgs, f.Message)
	}
	if len(msgs) > 0 {
		s += ": " + strings.Join(msgs, "; ")
	}
	return s
}

// writeArtifact stores v as JSON in the run's directory (temp file, fsync,
// rename: a crash leaves the old file or the new one).
func (o *Orchestrator) writeArtifact(id int64, name string, v any) (store.VetArtifact, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return store.VetArtifact{}, err
	}
	return o.writeArtifactBytes(id, name, b)
}

func (o *Orchestrator) writeArtifactBytes(id int64, name string, b []byte) (store.VetArtifact, error) {
	dir := o.ArtifactDir(id)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return store.VetArtifact{}, fmt.Errorf("creating the run's artifact directory: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		return store.VetArtifact{}, fmt.Errorf("writing %s of run %d: %w", name, id, err)
	}
	sum := sha256.Sum256(b)
	return store.VetArtifact{RunID: id, Name: name, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// ReadArtifact returns a stored artifact of run id.
func (o *Orchestrator) ReadArtifact(id int64, name string) ([]byte, error) {
	if name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		return nil, fmt.Errorf("%w: artifact %q", ErrInvalid, name)
	}
	b, err := os.ReadFile(filepath.Join(o.ArtifactDir(id), name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: run %d has no %s", ErrNotFound, id, name)
	}
	return b, err
}
