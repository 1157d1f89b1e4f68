// Package orchestrator runs hardware vetting runs over the machine
// database: it creates runs with their bearer token and SSH key, moves them
// through their states as the host boots and its agent reports, stores
// events, stages, measurements and artifacts, times runs out, wakes hosts,
// delivers notifications and prunes old runs.
//
// States: queued → waiting_wol → booting → running → passed | failed |
// error | timed_out, or stopped by the operator; a failed run whose hold
// flag is set goes to holding (the agent serves SSH with the run's key)
// until it is released or the hold times out, and then ends failed.
//
// Two processes share it through the database: the HTTP boot service
// renders a queued run's token into the host's boot script and serves the
// agent protocol (Backend, TokenChecker), and the management service starts,
// stops and releases runs and calls Tick.
package orchestrator

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/spec"
	"kiln.dev/kiln/services/vetting/verdict"
)

// Run states.
const (
	StateQueued     = "queued"
	StateWaitingWoL = "waiting_wol"
	StateBooting    = "booting"
	StateRunning    = "running"
	StatePassed     = "passed"
	StateFailed     = "failed"
	StateHolding    = "holding"
	StateStopped    = "stopped"
	StateTimedOut   = "timed_out"
	StateError      = "error"
)

// Errors the API maps to HTTP statuses.
var (
	// ErrNotFound: no such run or host.
	ErrNotFound = errors.New("not found")
	// ErrState: the run is not in a state that allows the action.
	ErrState = errors.New("not possible in the run's state")
	// ErrInvalid: a request field is wrong (the message names it).
	ErrInvalid = errors.New("invalid")
)

// FieldError is a request field that is wrong; it wraps ErrInvalid.
type FieldError struct{ Name, Problem string }

func (e *FieldError) Error() string { return e.Name + ": " + e.Problem }

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Field names the request field.
func (e *FieldError) Field() string { return e.Name }

// Orchestrator is safe for concurrent use.
type Orchestrator struct {
	st  *store.Store
	cfg config.Vetting
	// dir holds each run's artifacts in dir/<run id>/.
	dir string
	now func() time.Time
	log *slog.Logger
	// WoL sends a magic packet for mac; nil disables waking.
	WoL func(ctx context.Context, mac string) error
	// Notify delivers one notification; nil leaves the outbox alone.
	Notify func(ctx context.Context, target config.Notify, n Notification) error
	// holdPort is the port a held host's SSH server listens on (the live
	// image's agent: 22).
	holdPort int
	// ReportURL returns the UI address of a run's report for notifications
	// ("" when unknown).
	ReportURL func(runID int64) string
}

// New returns an orchestrator over st, keeping artifacts below stateDir.
func New(st *store.Store, cfg config.Vetting, stateDir string, log *slog.Logger) *Orchestrator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Orchestrator{st: st, cfg: cfg, dir: filepath.Join(stateDir, "vetting", "runs"), now: time.Now,
		holdPort: 22, log: log.With("component", "vetting")}
}

// SetHoldPort replaces the held hosts' SSH port (tests whose SSH server
// cannot take port 22).
func (o *Orchestrator) SetHoldPort(port int) { o.holdPort = port }

// SetClock replaces the clock (tests).
func (o *Orchestrator) SetClock(now func() time.Time) { o.now = now }

// ArtifactDir returns where run id keeps its files.
func (o *Orchestrator) ArtifactDir(id int64) string {
	return filepath.Join(o.dir, strconv.FormatInt(id, 10))
}

// StartRequest asks for a run of Host.
type StartRequest struct {
	Host    string `json:"host"`
	Profile string `json:"profile"`
	// Hold keeps a failed host up for SSH; nil means the configured default.
	Hold *bool `json:"hold"`
	// Wipe allows destructive storage tests; ConfirmWipe must repeat the
	// host's name (the API also requires the admin scope).
	Wipe        bool   `json:"wipe"`
	ConfirmWipe string `json:"confirm_wipe"`
}

// Start creates a queued run of the host.
func (o *Orchestrator) Start(ctx context.Context, req StartRequest) (store.VetRun, error) {
	h, err := o.st.HostByName(ctx, req.Host)
	if errors.Is(err, store.ErrNotFound) {
		if req.Host == "" {
			return store.VetRun{}, &FieldError{"host", "missing; name the host to vet"}
		}
		return store.VetRun{}, fmt.Errorf("%w: host %q: no such host; register it first (POST /api/v1/hosts)", ErrNotFound, req.Host)
	}
	if err != nil {
		return store.VetRun{}, err
	}
	if req.Profile == "" {
		req.Profile = o.cfg.Profile()
	}
	if !config.ValidVetProfile(req.Profile) {
		return store.VetRun{}, &FieldError{"profile", fmt.Sprintf("%q is not a profile; use quick, standard or extended", req.Profile)}
	}
	if req.Wipe && req.ConfirmWipe != h.Name {
		return store.VetRun{}, &FieldError{"confirm_wipe", fmt.Sprintf("a destructive run erases %s's disks; repeat the host name %q to confirm", h.Name, h.Name)}
	}
	if _, err := spec.Parse([]byte(h.ExpectedSpec)); err != nil {
		return store.VetRun{}, &FieldError{"host", fmt.Sprintf("%s's expected spec cannot be used (%v); fix it in the host record (see docs/vetting.md)", h.Name, err)}
	}
	hold := o.cfg.HoldOnFailure
	if req.Hold != nil {
		hold = *req.Hold
	}
	return o.create(ctx, h, req.Profile, hold, req.Wipe)
}

func (o *Orchestrator) create(ctx context.Context, h store.Host, profile string, hold, wipe bool) (store.VetRun, error) {
	tok, err := protocol.NewToken()
	if err != nil {
		return store.VetRun{}, err
	}
	priv, pub, err := newRunKey(h.Name)
	if err != nil {
		return store.VetRun{}, err
	}
	r, err := o.st.CreateVetRun(ctx, store.VetRun{HostID: h.ID, Host: h.Name, State: StateQueued, Profile: profile,
		Hold: hold, Wipe: wipe, Token: tok, TokenHash: protocol.HashToken(tok), SSHPrivate: priv, SSHPublic: pub,
		Spec: h.ExpectedSpec})
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return store.VetRun{}, fmt.Errorf("%w: %w", ErrState, err)
		}
		return store.VetRun{}, err
	}
	o.log.Info("run queued", "run", r.ID, "host", h.Name, "profile", profile, "hold", hold, "wipe", wipe)
	return r, nil
}

// Run returns run id.
func (o *Orchestrator) Run(ctx context.Context, id int64) (store.VetRun, error) {
	r, err := o.st.VetRunByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.VetRun{}, fmt.Errorf("%w: run %d", ErrNotFound, id)
	}
	return r, err
}

// Stop ends a run under way as stopped; its agent is told at its next
// message (410) and powers the host off.
func (o *Orchestrator) Stop(ctx context.Context, id int64) (store.VetRun, error) {
	return o.change(ctx, id, func(r *store.VetRun, u *store.VetUpdate) error {
		if !r.Active {
			return fmt.Errorf("%w: run %d is already over (%s)", ErrState, id, r.State)
		}
		o.end(r, u, StateStopped, "stopped by the operator")
		return nil
	})
}

// Release ends the hold of a held run; the run ends failed.
func (o *Orchestrator) Release(ctx context.Context, id int64) (store.VetRun, error) {
	return o.change(ctx, id, func(r *store.VetRun, u *store.VetUpdate) error {
		if r.State != StateHolding && !(r.Active && r.Hold && r.Verdict == string(verdict.Fail)) {
			return fmt.Errorf("%w: run %d is not held (%s)", ErrState, id, r.State)
		}
		o.end(r, u, StateFailed, "")
		return nil
	})
}

// change updates run id with fn; when that ends the run or holds it, the
// run's reports are saved.
func (o *Orchestrator) change(ctx context.Context, id int64, fn func(*store.VetRun, *store.VetUpdate) error) (store.VetRun, error) {
	var before store.VetRun
	r, err := o.st.UpdateVetRun(ctx, id, func(r *store.VetRun, u *store.VetUpdate) error {
		before = *r
		return fn(r, u)
	})
	if errors.Is(err, store.ErrNotFound) {
		return store.VetRun{}, fmt.Errorf("%w: run %d", ErrNotFound, id)
	}
	if err == nil && (before.Active && !r.Active || before.State != StateHolding && r.State == StateHolding) {
		o.saveReports(ctx, id)
	}
	return r, err
}

// end makes r over in state (why goes to its error when set), drops its
// secrets and queues the notifications of the outcome.
func (o *Orchestrator) end(r *store.VetRun, u *store.VetUpdate, state, why string) {
	r.State, r.Active = state, false
	if r.Ended.IsZero() {
		r.Ended = o.now()
	}
	if why != "" && r.Error == "" {
		r.Error = why
	}
	r.Token, r.SSHPrivate, r.SSHPublic, r.HoldAddr = "", "", "", ""
	r.Stage, r.Progress = "", 0
	o.queueNotifications(r, u, state)
}

// Notification is the message of one run outcome (stored as JSON in the
// outbox).
type Notification struct {
	RunID     int64     `json:"run_id"`
	Host      string    `json:"host"`
	State     string    `json:"state"`
	Verdict   string    `json:"verdict,omitempty"`
	Summary   string    `json:"summary"`
	Findings  []string  `json:"findings,omitempty"`
	ReportURL string    `json:"report_url,omitempty"`
	HoldAddr  string    `json:"hold_addr,omitempty"`
	Time      time.Time `json:"time"`
}

func (o *Orchestrator) queueNotifications(r *store.VetRun, u *store.VetUpdate, outcome string) {
	if len(o.cfg.Notify) == 0 {
		return
	}
	n := Notification{RunID: r.ID, Host: r.Host, State: outcome, Verdict: r.Verdict, Summary: Summary(*r),
		HoldAddr: r.HoldAddr, Time: o.now()}
	for _, f := range DecodeFindings(r.Findings) {
		n.Findings = append(n.Findings, f.Message)
	}
	if o.ReportURL != nil {
		n.ReportURL = o.ReportURL(r.ID)
	}
	body, _ := json.Marshal(n)
	for _, t := range o.cfg.Notify {
		if t.Wants(outcome) {
			u.Notify = append(u.Notify, store.VetNotification{Target: t.Name, Message: string(body)})
		}
	}
}

// Summary is a run's one-line outcome.
func Summary(r store.VetRun) string {
	if r.Summary != "" {
		return r.Summary
	}
	switch r.State {
	case StateStopped:
		return "stopped by the operator"
	case StateTimedOut, StateError:
		if r.Error != "" {
			return r.Error
		}
	}
	return r.State
}

// DecodeFindings parses a run's stored findings; unreadable text gives none.
func DecodeFindings(s string) []verdict.Finding {
	var fs []verdict.Finding
	if err := json.Unmarshal([]byte(s), &fs); err != nil {
		return nil
	}
	return fs
}

// newRunKey returns a fresh ed25519 key: the private key in OpenSSH PEM
// and the public key as an authorized_keys line.
func newRunKey(host string) (priv, pub string, err error) {
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generating the run's SSH key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(sk, "kiln vetting hold of "+host)
	if err != nil {
		return "", "", fmt.Errorf("encoding the run's SSH key: %w", err)
	}
	spk, err := ssh.NewPublicKey(pk)
	if err != nil {
		return "", "", err
	}
	return string(pem.EncodeToMemory(block)), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(spk))) + " kiln-hold-" + host, nil
}

// ParseRunID parses a run ID as the API and protocol carry it.
func ParseRunID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%w: run id %q is not a positive number", ErrInvalid, s)
	}
	return id, nil
}
