package report

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"kiln.dev/kiln/services/vetting/inventory"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/spec"
	"kiln.dev/kiln/services/vetting/verdict"
)

// Schema names the JSON document; SchemaVersion grows when a field changes
// meaning or goes away. New fields may appear within a version, so readers
// should ignore fields they do not know.
const (
	Schema        = "kiln.vetting.report"
	SchemaVersion = 1
)

// Document is the JSON report. Times are RFC 3339 in UTC and left out when
// unknown; durations are seconds; sizes are bytes; lists are never null.
type Document struct {
	Schema        string `json:"schema"`
	SchemaVersion int    `json:"schema_version"`
	// Generated is when the document was rendered.
	Generated time.Time `json:"generated,omitzero"`
	Run       RunInfo   `json:"run"`
	// Verdict is PASS, FAIL, DEGRADED, ERROR, TIMEOUT or SKIPPED; empty
	// when the run has none (stopped, still running).
	Verdict verdict.Status `json:"verdict,omitempty"`
	// Complete says the agent's final report arrived; false: stages and
	// findings are what was known when the run ended.
	Complete bool `json:"complete"`
	// Findings are the reasons for the verdict, most severe first.
	Findings []verdict.Finding `json:"findings"`
	// Spec is the expected-spec diff, in the spec's order.
	Spec   []SpecItem `json:"spec"`
	Stages []Stage    `json:"stages"`
	// Baseline names the model baseline performance was judged against.
	Baseline *BaselineInfo `json:"baseline,omitempty"`
	// Machine is the inventory summary; nil when no inventory arrived.
	Machine *Machine `json:"machine,omitempty"`
	// Notes are the agent's free-text notes ("spec did not parse").
	Notes []Note `json:"notes"`
	// Hold is set while (or after) the host was held for SSH.
	Hold *Hold `json:"hold,omitempty"`
	// History is the host's earlier runs, oldest first.
	History []HistoryItem `json:"history"`
}

// RunInfo is the run's metadata.
type RunInfo struct {
	ID              string    `json:"id"`
	Host            string    `json:"host"`
	MACs            []string  `json:"macs"`
	State           string    `json:"state"`
	Profile         string    `json:"profile,omitempty"`
	Wipe            bool      `json:"wipe"`
	Hold            bool      `json:"hold"`
	Created         time.Time `json:"created,omitzero"`
	Started         time.Time `json:"started,omitzero"`
	Ended           time.Time `json:"ended,omitzero"`
	DurationSeconds float64   `json:"duration_seconds,omitempty"`
	AgentVersion    string    `json:"agent_version,omitempty"`
	Error           string    `json:"error,omitempty"`
}

// SpecItem is one expected-vs-actual line of the spec diff.
type SpecItem struct {
	Fact     string        `json:"fact"`
	Expected string        `json:"expected"`
	Actual   string        `json:"actual,omitempty"`
	Severity spec.Severity `json:"severity"`
	// Status is match, mismatch, missing or invalid.
	Status spec.Status `json:"status"`
	// Outcome is what the item contributes to the verdict.
	Outcome verdict.Status `json:"outcome"`
	Problem string         `json:"problem,omitempty"`
	Note    string         `json:"note,omitempty"`
}

// Stage is one stage's result.
type Stage struct {
	Name string `json:"name"`
	// Status is empty when the stage never finished.
	Status          verdict.Status `json:"status,omitempty"`
	Finished        bool           `json:"finished"`
	Started         time.Time      `json:"started,omitzero"`
	Ended           time.Time      `json:"ended,omitzero"`
	DurationSeconds float64        `json:"duration_seconds,omitempty"`
	TimeoutSeconds  float64        `json:"timeout_seconds,omitempty"`
	Summary         string         `json:"summary,omitempty"`
	Error           string         `json:"error,omitempty"`
	Measurements    []Measurement  `json:"measurements"`
}

// Measurement is one measured value with its limits and outcome.
type Measurement struct {
	Name string `json:"name"`
	// Value is null when nothing was measured (SKIPPED, ERROR).
	Value  *float64          `json:"value"`
	Unit   string            `json:"unit,omitempty"`
	Status verdict.Status    `json:"status"`
	Better verdict.Direction `json:"better,omitempty"`
	// Message explains the status; Detail is the stage's own context.
	Message    string      `json:"message,omitempty"`
	Detail     string      `json:"detail,omitempty"`
	Validators []Validator `json:"validators"`
	// Baseline is the model's earlier values of this measurement.
	Baseline *MeasurementBaseline `json:"baseline,omitempty"`
}

// Validator is one limit on a measurement.
type Validator struct {
	Op     verdict.Op     `json:"op"`
	Limit  float64        `json:"limit"`
	OnFail verdict.Status `json:"on_fail"`
	Why    string         `json:"why,omitempty"`
	// Holds is null when nothing was measured.
	Holds *bool `json:"holds"`
	// FromBaseline marks the limit the model's baseline added.
	FromBaseline bool `json:"from_baseline"`
}

// MeasurementBaseline is what earlier passed runs of the model measured.
type MeasurementBaseline struct {
	Runs   int     `json:"runs"`
	Mean   float64 `json:"mean"`
	Stddev float64 `json:"stddev"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// DeltaPercent is (value − mean) / mean × 100; null when either is
	// missing or the mean is 0.
	DeltaPercent *float64 `json:"delta_percent"`
}

// BaselineInfo names the baseline.
type BaselineInfo struct {
	Model string `json:"model"`
	Runs  int    `json:"runs"`
}

// Machine summarises the inventory.
type Machine struct {
	Kernel   string   `json:"kernel,omitempty"`
	System   System   `json:"system"`
	Board    Board    `json:"board"`
	BIOS     BIOS     `json:"bios"`
	CPU      CPU      `json:"cpu"`
	Memory   Memory   `json:"memory"`
	Disks    []Disk   `json:"disks"`
	NICs     []NIC    `json:"nics"`
	PCIe     PCIe     `json:"pcie"`
	Warnings []string `json:"warnings"`
}

// System is the machine's identity (SMBIOS type 1).
type System struct {
	Manufacturer string `json:"manufacturer,omitempty"`
	Product      string `json:"product,omitempty"`
	Version      string `json:"version,omitempty"`
	Serial       string `json:"serial,omitempty"`
	UUID         string `json:"uuid,omitempty"`
	SKU          string `json:"sku,omitempty"`
}

// Board is the baseboard (SMBIOS type 2).
type Board struct {
	Manufacturer string `json:"manufacturer,omitempty"`
	Product      string `json:"product,omitempty"`
	Version      string `json:"version,omitempty"`
	Serial       string `json:"serial,omitempty"`
}

// BIOS is the firmware (SMBIOS type 0).
type BIOS struct {
	Vendor  string `json:"vendor,omitempty"`
	Version string `json:"version,omitempty"`
	Date    string `json:"date,omitempty"`
}

// CPU summarises the processors.
type CPU struct {
	Model   string `json:"model,omitempty"`
	Vendor  string `json:"vendor,omitempty"`
	Sockets int    `json:"sockets"`
	Cores   int    `json:"cores"`
	Threads int    `json:"threads"`
	MaxMHz  int    `json:"max_mhz,omitempty"`
}

// Memory summarises the system memory; DIMMs lists every slot, empty ones
// with size 0.
type Memory struct {
	InstalledBytes int64  `json:"installed_bytes"`
	UsableBytes    int64  `json:"usable_bytes"`
	Slots          int    `json:"slots"`
	Populated      int    `json:"populated"`
	ECC            bool   `json:"ecc"`
	DIMMs          []DIMM `json:"dimms"`
}

// DIMM is one memory slot.
type DIMM struct {
	Locator      string `json:"locator"`
	SizeBytes    int64  `json:"size_bytes"`
	Type         string `json:"type,omitempty"`
	SpeedMTs     int    `json:"speed_mts,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
	PartNumber   string `json:"part_number,omitempty"`
	Serial       string `json:"serial,omitempty"`
	ECC          bool   `json:"ecc"`
}

// Disk is one whole disk.
type Disk struct {
	Name       string `json:"name"`
	Model      string `json:"model,omitempty"`
	Serial     string `json:"serial,omitempty"`
	Firmware   string `json:"firmware,omitempty"`
	Transport  string `json:"transport,omitempty"`
	SizeBytes  int64  `json:"size_bytes"`
	Rotational bool   `json:"rotational"`
	Removable  bool   `json:"removable"`
	// SMARTHealth is PASSED or FAILED; empty when the disk offers no SMART.
	SMARTHealth string `json:"smart_health,omitempty"`
	// SMART holds the drive's defect and wear counters.
	SMART map[string]int64 `json:"smart,omitempty"`
}

// NIC is one network interface.
type NIC struct {
	Name      string `json:"name"`
	MAC       string `json:"mac"`
	Driver    string `json:"driver,omitempty"`
	Carrier   bool   `json:"carrier"`
	SpeedMbps int    `json:"speed_mbps"`
}

// PCIe counts the PCI Express links and lists the degraded ones.
type PCIe struct {
	Links    int            `json:"links"`
	Degraded []DegradedLink `json:"degraded"`
}

// DegradedLink is a PCIe link that trained below its maximum.
type DegradedLink struct {
	Address     string  `json:"address"`
	Class       string  `json:"class,omitempty"`
	Driver      string  `json:"driver,omitempty"`
	SpeedGTs    float64 `json:"speed_gts"`
	MaxSpeedGTs float64 `json:"max_speed_gts"`
	Width       int     `json:"width"`
	MaxWidth    int     `json:"max_width"`
}

// Note is a note the agent sent.
type Note struct {
	Time  time.Time `json:"time,omitzero"`
	Stage string    `json:"stage,omitempty"`
	Note  string    `json:"note"`
}

// Hold says where the held host can be reached.
type Hold struct {
	Addr    string    `json:"addr,omitempty"`
	HostKey string    `json:"host_key,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	Last    time.Time `json:"last,omitzero"`
}

// JSON renders the run as the indented JSON Document.
func JSON(r Run) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "≥" and "<" stay readable; this is not HTML
	enc.SetIndent("", "  ")
	if err := enc.Encode(build(r)); err != nil {
		return nil, fmt.Errorf("encoding the report of run %s: %w", r.ID, err)
	}
	return buf.Bytes(), nil
}

// baselinePrefix starts the Why of a validator verdict.ApplyBaseline adds;
// TestBaselineValidatorMarked pins it to verdict's wording.
const baselinePrefix = "baseline of "

// build derives the document from a run. HTML renders the same document,
// so both views agree on every number.
func build(r Run) Document {
	d := Document{
		Schema:        Schema,
		SchemaVersion: SchemaVersion,
		Generated:     utc(r.Generated),
		Run: RunInfo{
			ID: r.ID, Host: r.Host, MACs: nonNil(r.MACs), State: r.State, Profile: r.Profile,
			Wipe: r.Wipe, Hold: r.Hold, Created: utc(r.Created), Started: utc(r.Started), Ended: utc(r.Ended),
			Error: r.Error,
		},
		Verdict:  r.Verdict,
		Findings: []verdict.Finding{},
		Spec:     []SpecItem{},
		Notes:    []Note{},
		History:  []HistoryItem{},
	}
	var inv *inventory.Inventory
	var diff []spec.Result
	var base *verdict.Baseline
	if rep := r.Report; rep != nil {
		d.Complete = true
		inv, diff, base = &rep.Inventory, rep.Diff, rep.Baseline
		d.Run.AgentVersion = rep.AgentVersion
		if d.Run.Profile == "" {
			d.Run.Profile = rep.Profile
		}
		if d.Run.Started.IsZero() {
			d.Run.Started = utc(rep.Started)
		}
		if d.Run.Ended.IsZero() {
			d.Run.Ended = utc(rep.Ended)
		}
		if d.Verdict == "" {
			d.Verdict = rep.Verdict
		}
	} else if r.Inventory != nil {
		inv, diff = &r.Inventory.Inventory, r.Inventory.Diff
	}
	if !d.Run.Started.IsZero() && d.Run.Ended.After(d.Run.Started) {
		d.Run.DurationSeconds = seconds(d.Run.Ended.Sub(d.Run.Started))
	}
	for _, res := range diff {
		d.Spec = append(d.Spec, SpecItem{Fact: res.Fact, Expected: res.Expected, Actual: res.Actual,
			Severity: res.Severity, Status: res.Status, Outcome: verdict.SpecStatus(res), Problem: res.Problem, Note: res.Note})
	}
	results := stageResults(r)
	for _, sr := range results {
		d.Stages = append(d.Stages, stage(sr, base))
	}
	if d.Stages == nil {
		d.Stages = []Stage{}
	}
	if base != nil {
		d.Baseline = &BaselineInfo{Model: base.Model, Runs: base.Runs}
	}
	if inv != nil {
		d.Machine = machine(*inv)
	}

	// Findings: the agent's own when its report arrived; otherwise judged
	// from what did arrive (spec mismatches stand whatever happened next).
	if r.Report != nil {
		d.Findings = append(d.Findings, r.Report.Findings...)
	} else {
		var finished []verdict.StageResult
		for _, sr := range results {
			if sr.finished {
				finished = append(finished, sr.StageResult)
			}
		}
		_, fs := verdict.Run(diff, finished)
		d.Findings = append(d.Findings, fs...)
	}
	if r.Error != "" {
		st := d.Verdict
		switch {
		case st != "":
		case r.State == "stopped":
			st = verdict.Skipped // an operator's decision, not a verdict
		case r.State == "timed_out":
			st = verdict.Timeout
		default:
			st = verdict.Error
		}
		d.Findings = append([]verdict.Finding{{Source: "run", Status: st, Message: r.Error}}, d.Findings...)
	}

	for _, e := range r.Events {
		switch e.Kind {
		case protocol.EventNote:
			d.Notes = append(d.Notes, Note{Time: utc(e.Time), Stage: e.Stage, Note: e.Note})
		case protocol.EventHolding:
			if d.Hold == nil {
				d.Hold = &Hold{Since: utc(e.Time)}
			}
			d.Hold.Addr, d.Hold.HostKey, d.Hold.Last = e.Addr, e.HostKey, utc(e.Time)
		}
	}
	if r.HoldAddr != "" || r.HoldHostKey != "" {
		if d.Hold == nil {
			d.Hold = &Hold{}
		}
		d.Hold.Addr, d.Hold.HostKey = cmp.Or(r.HoldAddr, d.Hold.Addr), cmp.Or(r.HoldHostKey, d.Hold.HostKey)
	}

	for _, h := range r.History {
		if h.ID == r.ID {
			continue
		}
		h.Ended = utc(h.Ended)
		d.History = append(d.History, h)
	}
	slices.SortStableFunc(d.History, func(a, b HistoryItem) int { return a.Ended.Compare(b.Ended) })
	return d
}

// stageResult is a stage as far as it got.
type stageResult struct {
	verdict.StageResult
	finished bool
	timeout  time.Duration
}

// stageResults lists the run's stages: the report's when it arrived, else
// those the events started or ended, in the order they started.
func stageResults(r Run) []stageResult {
	timeouts := map[string]time.Duration{}
	var out []stageResult
	index := map[string]int{}
	for _, e := range r.Events {
		switch e.Kind {
		case protocol.EventStageStart:
			timeouts[e.Stage] = e.Timeout
			if _, ok := index[e.Stage]; !ok {
				index[e.Stage] = len(out)
				out = append(out, stageResult{StageResult: verdict.StageResult{Stage: e.Stage, Started: e.Time}})
			}
		case protocol.EventStageEnd:
			if e.Result == nil {
				continue
			}
			i, ok := index[e.Stage]
			if !ok {
				i = len(out)
				index[e.Stage] = i
				out = append(out, stageResult{})
			}
			out[i].StageResult, out[i].finished = *e.Result, true
		}
	}
	if r.Report != nil {
		out = out[:0]
		for _, sr := range r.Report.Stages {
			out = append(out, stageResult{StageResult: sr, finished: true})
		}
	}
	for i := range out {
		if out[i].Stage == "" {
			out[i].Stage = "(unnamed)"
		}
		out[i].timeout = timeouts[out[i].Stage]
	}
	return out
}

func stage(sr stageResult, base *verdict.Baseline) Stage {
	s := Stage{Name: sr.Stage, Finished: sr.finished, Started: utc(sr.Started), Ended: utc(sr.Ended),
		TimeoutSeconds: seconds(sr.timeout), Summary: sr.Summary, Error: sr.Error, Measurements: []Measurement{}}
	if sr.finished {
		s.Status = sr.Status
	}
	if !sr.Started.IsZero() && sr.Ended.After(sr.Started) {
		s.DurationSeconds = seconds(sr.Duration())
	}
	for _, m := range sr.Measurements {
		s.Measurements = append(s.Measurements, measurement(m, base))
	}
	return s
}

func measurement(m verdict.Measurement, base *verdict.Baseline) Measurement {
	out := Measurement{Name: m.Name, Unit: m.Unit, Status: m.Status, Better: m.Better,
		Message: m.Message, Detail: m.Detail, Validators: []Validator{}}
	measured := m.Status != verdict.Skipped && m.Status != verdict.Error && finite(m.Value)
	if measured {
		v := m.Value
		out.Value = &v
	}
	for _, v := range m.Validators {
		val := Validator{Op: v.Op, Limit: v.Limit, OnFail: v.OnFail, Why: v.Why,
			FromBaseline: strings.HasPrefix(v.Why, baselinePrefix)}
		if val.OnFail == "" {
			val.OnFail = verdict.Fail
		}
		if measured {
			h := v.Holds(m.Value)
			val.Holds = &h
		}
		out.Validators = append(out.Validators, val)
	}
	if base != nil {
		if st, ok := base.Stats[m.Name]; ok {
			mb := &MeasurementBaseline{Runs: st.N, Mean: st.Mean, Stddev: st.Stddev, Min: st.Min, Max: st.Max}
			if measured && st.Mean != 0 {
				p := (m.Value - st.Mean) / st.Mean * 100
				mb.DeltaPercent = &p
			}
			out.Baseline = mb
		}
	}
	return out
}

func machine(inv inventory.Inventory) *Machine {
	m := &Machine{
		Kernel: inv.Kernel,
		System: System{Manufacturer: inv.System.Manufacturer, Product: inv.System.Product, Version: inv.System.Version,
			Serial: inv.System.Serial, UUID: inv.System.UUID, SKU: inv.System.SKU},
		Board: Board{Manufacturer: inv.Board.Manufacturer, Product: inv.Board.Product, Version: inv.Board.Version, Serial: inv.Board.Serial},
		BIOS:  BIOS{Vendor: inv.BIOS.Vendor, Version: inv.BIOS.Version, Date: inv.BIOS.Date},
		CPU: CPU{Model: inv.CPU.Model, Vendor: inv.CPU.Vendor, Sockets: inv.CPU.Sockets, Cores: inv.CPU.Cores,
			Threads: inv.CPU.Threads, MaxMHz: inv.CPU.MaxMHz},
		Memory:   Memory{InstalledBytes: inv.Memory.InstalledBytes, UsableBytes: inv.Memory.UsableBytes, Slots: len(inv.Memory.DIMMs), DIMMs: []DIMM{}},
		Disks:    []Disk{},
		NICs:     []NIC{},
		PCIe:     PCIe{Links: len(inv.PCIe), Degraded: []DegradedLink{}},
		Warnings: nonNil(inv.Warnings),
	}
	ecc := true
	for _, dm := range inv.Memory.DIMMs {
		m.Memory.DIMMs = append(m.Memory.DIMMs, DIMM{Locator: dm.Locator, SizeBytes: dm.SizeBytes, Type: dm.Type, SpeedMTs: dm.SpeedMTs,
			Manufacturer: dm.Manufacturer, PartNumber: dm.PartNumber, Serial: dm.Serial, ECC: dm.ECC})
		if dm.SizeBytes > 0 {
			m.Memory.Populated++
			ecc = ecc && dm.ECC
		}
	}
	m.Memory.ECC = ecc && m.Memory.Populated > 0
	for _, dk := range inv.Disks {
		d := Disk{Name: dk.Name, Model: dk.Model, Serial: dk.Serial, Firmware: dk.Firmware, Transport: dk.Transport,
			SizeBytes: dk.SizeBytes, Rotational: dk.Rotational, Removable: dk.Removable}
		if dk.SMART != nil {
			d.SMARTHealth, d.SMART = dk.SMART.Health, dk.SMART.Counters
		}
		m.Disks = append(m.Disks, d)
	}
	for _, n := range inv.NICs {
		m.NICs = append(m.NICs, NIC{Name: n.Name, MAC: n.MAC, Driver: n.Driver, Carrier: n.Carrier, SpeedMbps: n.SpeedMbps})
	}
	for _, p := range inv.PCIe {
		if p.Degraded {
			m.PCIe.Degraded = append(m.PCIe.Degraded, DegradedLink{Address: p.Address, Class: p.Class, Driver: p.Driver,
				SpeedGTs: p.SpeedGTs, MaxSpeedGTs: p.MaxSpeedGTs, Width: p.Width, MaxWidth: p.MaxWidth})
		}
	}
	return m
}

// headline is the run's outcome in one line: its verdict (or state) and
// its lead.
func (d Document) headline() string {
	status := string(d.Verdict)
	if status == "" && d.Run.State != "" {
		status = stateText(d.Run.State)
	}
	lead := d.lead()
	switch {
	case status == "":
		return lead
	case lead == "":
		return status
	}
	return status + ": " + lead
}

// lead says why the run has its outcome: where it is held and its first
// finding, or what passed.
func (d Document) lead() string {
	var parts []string
	if d.Run.State == "holding" && d.Hold != nil && d.Hold.Addr != "" {
		parts = append(parts, "holding for SSH at "+d.Hold.Addr)
	}
	switch n := len(d.Findings); {
	case n == 1:
		parts = append(parts, d.Findings[0].Message)
	case n > 1:
		parts = append(parts, fmt.Sprintf("%s (and %d more)", d.Findings[0].Message, n-1))
	case d.Verdict == verdict.Pass:
		parts = append(parts, fmt.Sprintf("%d stages and %d spec items passed", len(d.Stages), len(d.Spec)))
	}
	return strings.Join(parts, ": ")
}

// stateText says a run state in words.
func stateText(state string) string {
	switch state {
	case "queued":
		return "queued"
	case "waiting_wol":
		return "waiting for the host to wake"
	case "booting":
		return "booting the live image"
	case "running":
		return "running"
	case "holding":
		return "held for SSH"
	case "stopped":
		return "stopped before the agent reported"
	case "timed_out":
		return "timed out before the agent reported"
	case "error":
		return "ended with an error"
	}
	return strings.ReplaceAll(state, "_", " ")
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func seconds(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
