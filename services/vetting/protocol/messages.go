// Package protocol is how the vetting agent talks to the orchestrator: HTTP
// and JSON, every request authenticated with the run's bearer token.
//
// The agent says Hello and gets an Assignment (run ID, profile, wipeable,
// expected spec, baseline); then it sends its Inventory with the spec diff,
// Events as stages start, progress and end (each end carries the stage's
// measurements), and finally a Report. Throughput endpoints give the network
// stage something to move bytes to and from.
//
// Tokens belong to one run and expire with it. The server side takes a
// TokenChecker (the orchestrator's database; Tokens is an in-memory one) and
// a Backend that receives the messages; a wrong or expired token is refused
// with 401, another run's token with 403. The client retries network errors
// and 5xx with backoff, and stops at answers retrying cannot change
// (ErrRefused, ErrGone).
package protocol

import (
	"net/netip"
	"time"

	"kiln.dev/kiln/services/vetting/inventory"
	"kiln.dev/kiln/services/vetting/spec"
	"kiln.dev/kiln/services/vetting/stages"
	"kiln.dev/kiln/services/vetting/verdict"
)

// Version is the protocol version an agent announces in Hello.
const Version = 1

// Hello is the agent's first message: who it is and which machine it runs on.
type Hello struct {
	Protocol     int    `json:"protocol"`
	AgentVersion string `json:"agent_version"`
	// Host and MAC are what the boot script put on the kernel command line
	// (kiln.host, kiln.mac); MACs lists every NIC the agent sees.
	Host   string   `json:"host,omitempty"`
	MAC    string   `json:"mac,omitempty"`
	MACs   []string `json:"macs,omitempty"`
	Kernel string   `json:"kernel,omitempty"`
	// BootID is /proc/sys/kernel/random/boot_id: a reboot mid-run shows.
	BootID string `json:"boot_id,omitempty"`
	// Addrs are the agent's IPv4 addresses with prefix ("10.9.0.50/24").
	Addrs []string `json:"addrs,omitempty"`
	// Model is the machine's manufacturer and product (SMBIOS): the key of
	// the baseline the assignment carries.
	Model string `json:"model,omitempty"`
	// Source is the address the hello came from: the server sets it from
	// the connection, never from the agent's JSON.
	Source netip.Addr `json:"-"`
}

// Assignment is the orchestrator's answer to Hello: what to run.
type Assignment struct {
	RunID string `json:"run_id"`
	// Profile names a built-in profile (quick, standard, extended).
	Profile string `json:"profile"`
	// Settings, when set, replaces the named profile's settings entirely.
	Settings *stages.Profile `json:"settings,omitempty"`
	// Wipeable allows destructive storage tests (the host's data may go).
	Wipeable bool `json:"wipeable"`
	// Spec is the host's expected spec (YAML, see package spec); empty: none.
	Spec string `json:"spec,omitempty"`
	// Baseline is earlier runs of the same model, when there are any.
	Baseline *verdict.Baseline `json:"baseline,omitempty"`
	// HoldOnFailure keeps the agent running after a failed run (for SSH).
	HoldOnFailure bool `json:"hold_on_failure,omitempty"`
	// Deadline is when the run's token expires; the agent plans within it.
	Deadline time.Time `json:"deadline,omitempty"`
	// HoldKey is the run's SSH public key (authorized_keys format): the only
	// key the agent's SSH server accepts while it holds the host.
	HoldKey string `json:"hold_key,omitempty"`
	// After is what the live image does once the run is over and not held:
	// AfterPoweroff (the default when empty), AfterReboot or AfterStay.
	After string `json:"after,omitempty"`
}

// What the live image does after a run.
const (
	AfterPoweroff = "poweroff"
	AfterReboot   = "reboot"
	AfterStay     = "stay"
)

// Message is one of the records an agent sends after Hello: *Inventory,
// *Events or *Report.
type Message interface{ path() string }

// Inventory reports the machine's hardware and its diff against the
// expected spec.
type Inventory struct {
	Inventory inventory.Inventory `json:"inventory"`
	Diff      []spec.Result       `json:"diff"`
}

func (*Inventory) path() string { return "inventory" }

// EventKind names an event.
type EventKind string

// Event kinds: the three stage events come from stages.Runner; note is free
// text from the agent ("spec did not parse", "holding for SSH").
const (
	EventStageStart    EventKind = EventKind(stages.EventStart)
	EventStageProgress EventKind = EventKind(stages.EventProgress)
	EventStageEnd      EventKind = EventKind(stages.EventEnd)
	EventNote          EventKind = "note"
	// EventHolding is sent when the agent's SSH server is up and then every
	// HoldHeartbeat while it holds the host; Addr and HostKey say where and
	// what to trust. The orchestrator answers 410 once the run is released.
	EventHolding EventKind = "holding"
)

// HoldHeartbeat is how often a holding agent says it is still there.
const HoldHeartbeat = 15 * time.Second

// Event is one progress record. Seq numbers start at 1 and grow by one per
// event of a run, so the orchestrator can drop duplicates of a retried batch
// and a UI can resume a stream.
type Event struct {
	Seq      int64     `json:"seq"`
	Time     time.Time `json:"time"`
	Kind     EventKind `json:"kind"`
	Stage    string    `json:"stage,omitempty"`
	Fraction float64   `json:"fraction,omitempty"`
	Note     string    `json:"note,omitempty"`
	// Timeout is set on stage_start.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Result is set on stage_end: the stage's status and measurements.
	Result *verdict.StageResult `json:"result,omitempty"`
	// Addr ("10.9.0.50:22") and HostKey (authorized_keys format) are set on
	// holding.
	Addr    string `json:"addr,omitempty"`
	HostKey string `json:"host_key,omitempty"`
}

// Events is a batch of events, in Seq order.
type Events struct {
	Events []Event `json:"events"`
}

func (*Events) path() string { return "events" }

// Report is the final record of a run.
type Report struct {
	RunID        string                `json:"run_id"`
	AgentVersion string                `json:"agent_version"`
	Profile      string                `json:"profile"`
	Started      time.Time             `json:"started"`
	Ended        time.Time             `json:"ended"`
	Inventory    inventory.Inventory   `json:"inventory"`
	Diff         []spec.Result         `json:"diff"`
	Stages       []verdict.StageResult `json:"stages"`
	Verdict      verdict.Status        `json:"verdict"`
	Findings     []verdict.Finding     `json:"findings"`
	// Baseline is the one the measurements were judged against, if any.
	Baseline *verdict.Baseline `json:"baseline,omitempty"`
}

func (*Report) path() string { return "report" }

// Throughput is the server's answer to an upload.
type Throughput struct {
	Bytes int64 `json:"bytes"`
}

// apiError is the body of every error response.
type apiError struct {
	Error string `json:"error"`
}
