// Package report renders a vetting run's report: a stable JSON document for
// an operator's tooling (JSON) and a self-contained HTML page for people
// (HTML) — inline CSS and SVG charts, no scripts, no external assets, so it
// can be saved, mailed, printed and read on a phone.
//
// The input is a Run: plain data the orchestrator fills from its database.
// A run the agent never finished (stopped, timed out, lost) has no
// protocol.Report; the report then shows what is known — the inventory and
// spec diff if they arrived, and the stages from their events.
//
// Everything that came from the machine under test (DMI strings, disk
// models, notes) is untrusted: html/template escapes it in every context,
// and the page is meant to be served with ContentSecurityPolicy.
package report

import (
	"fmt"
	"time"

	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/verdict"
)

// Run is everything known about one vetting run.
type Run struct {
	ID   string
	Host string
	MACs []string
	// State is the orchestrator's run state: queued, waiting_wol, booting,
	// running, passed, failed, holding, stopped, timed_out or error.
	State   string
	Profile string
	Wipe    bool
	Hold    bool
	Created time.Time
	Started time.Time
	Ended   time.Time
	// Verdict is the run's verdict as the orchestrator recorded it; empty
	// when there is none (stopped, still running). When empty, the
	// Report's verdict is used.
	Verdict verdict.Status
	// Error is the orchestrator's explanation when the run ended abnormally
	// ("the agent did not report within the deadline").
	Error string
	// HoldAddr and HoldHostKey say where the held host's SSH server is.
	HoldAddr    string
	HoldHostKey string
	// Report is the agent's final report; nil when it never arrived.
	Report *protocol.Report
	// Inventory is the agent's inventory message, used when Report is nil.
	Inventory *protocol.Inventory
	// Events are the run's agent events in Seq order: the stage timeline,
	// notes, and the stages of a run that has no Report.
	Events []protocol.Event
	// History is earlier runs of the same host (any order).
	History []HistoryItem
	// Generated is when the report is rendered; zero leaves it out (golden
	// files stay stable).
	Generated time.Time
}

// HistoryItem is one earlier run of the same host.
type HistoryItem struct {
	ID      string         `json:"id"`
	State   string         `json:"state,omitempty"`
	Verdict verdict.Status `json:"verdict,omitempty"`
	Ended   time.Time      `json:"ended,omitzero"`
	// URL links to that run's report; empty: not linked.
	URL string `json:"url,omitempty"`
}

// ContentSecurityPolicy is the header value to serve HTML reports with: the
// page needs nothing but its inline stylesheet, so even markup that slipped
// through could neither run scripts nor load anything.
const ContentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"

// Summarize returns a one-line headline of the run's outcome and its
// findings as lines ("[spec] FAIL memory.installed_bytes: expected ≥ 64 GiB,
// got 2 GiB"), for notifications and lists.
func Summarize(r Run) (headline string, findings []string) {
	d := build(r)
	for _, f := range d.Findings {
		findings = append(findings, fmt.Sprintf("[%s] %s %s", f.Source, f.Status, f.Message))
	}
	return d.headline(), findings
}
