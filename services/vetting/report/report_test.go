package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/services/vetting/inventory"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/verdict"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json and *.golden.html")

var fixtures = []struct {
	name string
	run  func(testing.TB) Run
}{
	{"failed-held", failedHeldRun},
	{"stopped", stoppedRun},
	{"passed", passedRun},
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}

func TestGolden(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			r := f.run(t)
			js, err := JSON(r)
			if err != nil {
				t.Fatalf("JSON: %v", err)
			}
			golden(t, f.name+".golden.json", js)
			var page bytes.Buffer
			if err := HTML(&page, r); err != nil {
				t.Fatalf("HTML: %v", err)
			}
			golden(t, f.name+".golden.html", page.Bytes())
		})
	}
}

func decode(t *testing.T, r Run) Document {
	t.Helper()
	js, err := JSON(r)
	if err != nil {
		t.Fatalf("JSON: %v", err)
	}
	var d Document
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("decoding the JSON report: %v", err)
	}
	return d
}

func findMeasurement(d Document, name string) *Measurement {
	for _, s := range d.Stages {
		for i := range s.Measurements {
			if s.Measurements[i].Name == name {
				return &s.Measurements[i]
			}
		}
	}
	return nil
}

func TestJSONDocument(t *testing.T) {
	d := decode(t, failedHeldRun(t))
	if d.Schema != Schema || d.SchemaVersion != SchemaVersion {
		t.Errorf("schema = %q v%d, want %q v%d", d.Schema, d.SchemaVersion, Schema, SchemaVersion)
	}
	if d.Verdict != verdict.Fail || !d.Complete {
		t.Errorf("verdict = %s complete %v, want FAIL complete", d.Verdict, d.Complete)
	}
	if len(d.Findings) == 0 || d.Findings[0].Message != "memory.installed_bytes: expected ≥ 64 GiB, got 2 GiB" {
		t.Errorf("first finding = %+v, want the memory mismatch", d.Findings)
	}
	wantOutcomes := map[string]verdict.Status{"memory.installed_bytes": verdict.Fail, "cpu.threads": verdict.Pass,
		"nics.with_carrier": verdict.Degraded, "bios.vendor": verdict.Pass}
	for _, s := range d.Spec {
		if want, ok := wantOutcomes[s.Fact]; ok && s.Outcome != want {
			t.Errorf("spec %s outcome = %s, want %s", s.Fact, s.Outcome, want)
		}
	}
	if d.Run.DurationSeconds != 85 || d.Run.AgentVersion != "kiln-agent 0.7.0" {
		t.Errorf("run = %+v, want 85 s and the agent version", d.Run)
	}
	for _, h := range d.History {
		if h.ID == "42" {
			t.Errorf("history lists the run itself: %+v", d.History)
		}
	}
	if ids := []string{d.History[0].ID, d.History[1].ID, d.History[2].ID}; !cmp.Equal(ids, []string{"17", "25", "30"}) {
		t.Errorf("history order = %v, want oldest first [17 25 30]", ids)
	}
	if d.Hold == nil || d.Hold.Addr != "10.9.0.50:22" || !d.Hold.Since.Equal(at(86)) || !d.Hold.Last.Equal(at(101)) {
		t.Errorf("hold = %+v, want 10.9.0.50:22 since +86s, last +101s", d.Hold)
	}

	// The baseline judged storage slow: its validator is marked, the delta
	// computed, the stage DEGRADED.
	seq := findMeasurement(d, "storage.vda.seq_read_mbps")
	if seq == nil || seq.Status != verdict.Degraded || seq.Baseline == nil || seq.Baseline.DeltaPercent == nil {
		t.Fatalf("storage.vda.seq_read_mbps = %+v, want DEGRADED with a baseline delta", seq)
	}
	if got := *seq.Baseline.DeltaPercent; got > -56 || got < -58 {
		t.Errorf("delta = %.2f %%, want (212.5 − 495) / 495 ≈ −57 %%", got)
	}
	if len(seq.Validators) != 1 || !seq.Validators[0].FromBaseline || seq.Validators[0].Holds == nil || *seq.Validators[0].Holds {
		t.Errorf("validators = %+v, want one violated baseline validator", seq.Validators)
	}
	if m := findMeasurement(d, "cpu.throttle_events"); m == nil || m.Value != nil || m.Status != verdict.Skipped {
		t.Errorf("cpu.throttle_events = %+v, want SKIPPED with a null value", m)
	}
	if m := findMeasurement(d, "cpu.compute_errors"); m == nil || m.Value == nil || *m.Value != 0 || *m.Validators[0].Holds != true {
		t.Errorf("cpu.compute_errors = %+v, want 0 with a holding validator", m)
	}
	for _, s := range d.Stages {
		if s.Name == "memory" && (s.TimeoutSeconds != 300 || s.DurationSeconds != 38.5) {
			t.Errorf("memory stage = %v s of %v s, want 38.5 of 300", s.DurationSeconds, s.TimeoutSeconds)
		}
	}
}

// TestJSONWithoutReport: a stopped run shows what arrived — the inventory,
// the spec diff, the finished stage and the one that never ended — with
// findings judged from those.
func TestJSONWithoutReport(t *testing.T) {
	d := decode(t, stoppedRun(t))
	if d.Complete || d.Verdict != "" {
		t.Errorf("complete %v verdict %q, want incomplete without verdict", d.Complete, d.Verdict)
	}
	if len(d.Stages) != 2 || !d.Stages[0].Finished || d.Stages[0].Status != verdict.Pass || d.Stages[1].Finished || d.Stages[1].Status != "" {
		t.Fatalf("stages = %+v, want cpu PASS finished and memory unfinished", d.Stages)
	}
	if d.Stages[1].TimeoutSeconds != 1200 {
		t.Errorf("memory timeout = %v, want 1200 from its stage_start", d.Stages[1].TimeoutSeconds)
	}
	var msgs []string
	for _, f := range d.Findings {
		msgs = append(msgs, f.Source+": "+f.Message)
	}
	want := []string{"run: stopped by admin@example.com", "spec: disks.smart_health", "spec: cpu.model: cannot check", "spec: pcie.degraded_links"}
	if len(msgs) != len(want) {
		t.Fatalf("findings = %q, want %d starting with %q", msgs, len(want), want)
	}
	for i := range want {
		if !strings.HasPrefix(msgs[i], want[i]) {
			t.Errorf("finding %d = %q, want it to start with %q", i, msgs[i], want[i])
		}
	}
	if d.Machine == nil || d.Machine.Memory.Populated != 8 || d.Machine.Memory.Slots != 10 || !d.Machine.Memory.ECC {
		t.Errorf("memory = %+v, want 8 of 10 slots with ECC", d.Machine)
	}
	if len(d.Machine.PCIe.Degraded) != 1 || d.Machine.Disks[1].SMARTHealth != "FAILED" {
		t.Errorf("machine = %+v, want one degraded link and sda FAILED", d.Machine)
	}
	if len(d.Notes) != 1 || !strings.Contains(d.Notes[0].Note, "SMART of sda") {
		t.Errorf("notes = %+v, want the SMART note", d.Notes)
	}
}

func TestJSONEmptyRun(t *testing.T) {
	d := decode(t, Run{ID: "1", Host: "h", State: "queued"})
	if d.Machine != nil || d.Findings == nil || d.Stages == nil || d.Spec == nil || d.History == nil || d.Run.MACs == nil {
		t.Errorf("empty run = %+v, want no machine and empty (not null) lists", d)
	}
	var page bytes.Buffer
	if err := HTML(&page, Run{ID: "1", Host: "h", State: "queued"}); err != nil {
		t.Fatalf("HTML(empty run): %v", err)
	}
	for _, want := range []string{"No inventory arrived", "No stage started", "No times recorded", "first run"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("HTML(empty run) lacks %q", want)
		}
	}
}

// TestNonFiniteValues: a NaN from a broken database row must not break the
// JSON encoding; it becomes null.
func TestNonFiniteValues(t *testing.T) {
	r := Run{ID: "2", Host: "h", Report: &protocol.Report{Stages: []verdict.StageResult{{Stage: "cpu", Status: verdict.Error,
		Measurements: []verdict.Measurement{verdict.Evaluate(verdict.Measurement{Name: "cpu.units_per_second", Value: nanValue()})}}}}}
	d := decode(t, r)
	if m := findMeasurement(d, "cpu.units_per_second"); m == nil || m.Value != nil || m.Status != verdict.Error {
		t.Errorf("NaN measurement = %+v, want ERROR with a null value", m)
	}
	if err := HTML(io.Discard, r); err != nil {
		t.Errorf("HTML with a NaN: %v", err)
	}
}

func nanValue() float64 { z := 0.0; return z / z }

// TestBaselineValidatorMarked pins the report's recognition of baseline
// validators to the wording verdict.ApplyBaseline uses.
func TestBaselineValidatorMarked(t *testing.T) {
	b := verdict.NewBaseline("m", [][]verdict.Measurement{
		{{Name: "x", Value: 10, Better: verdict.Higher, Status: verdict.Pass}},
		{{Name: "x", Value: 10, Better: verdict.Higher, Status: verdict.Pass}},
		{{Name: "x", Value: 10, Better: verdict.Higher, Status: verdict.Pass}},
	})
	m := verdict.Measure("x", 9, "", verdict.Must(verdict.OpGE, 1, "works"))
	m.Better = verdict.Higher
	ms := verdict.ApplyBaseline([]verdict.Measurement{m}, b, verdict.Policy{})
	got := measurement(ms[0], &b)
	if len(got.Validators) != 2 || got.Validators[0].FromBaseline || !got.Validators[1].FromBaseline {
		t.Errorf("validators = %+v, want only the second marked as from the baseline", got.Validators)
	}
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name     string
		run      Run
		headline string
		findings int
	}{
		{"held", failedHeldRun(t), "FAIL: holding for SSH at 10.9.0.50:22: memory.installed_bytes: expected ≥ 64 GiB, got 2 GiB (and 2 more)", 3},
		{"stopped", stoppedRun(t), "stopped before the agent reported: stopped by admin@example.com (and 3 more)", 4},
		{"passed", passedRun(t), "PASS: 2 stages and 2 spec items passed", 0},
		{"queued", Run{State: "waiting_wol"}, "waiting for the host to wake", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headline, findings := Summarize(tc.run)
			if headline != tc.headline || len(findings) != tc.findings {
				t.Errorf("Summarize = %q, %d findings %q; want %q, %d", headline, len(findings), findings, tc.headline, tc.findings)
			}
		})
	}
	_, findings := Summarize(failedHeldRun(t))
	if want := "[spec] FAIL memory.installed_bytes: expected ≥ 64 GiB, got 2 GiB"; findings[0] != want {
		t.Errorf("first finding line = %q, want %q", findings[0], want)
	}
}

var (
	svgRE       = regexp.MustCompile(`(?s)<svg\b.*?</svg>`)
	tagRE       = regexp.MustCompile(`<[a-zA-Z][^>]*>`)
	tagNameRE   = regexp.MustCompile(`^<([a-zA-Z0-9]+)`)
	eventAttrRE = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	quotedRE    = regexp.MustCompile(`"[^"]*"`)
	// allowedTags are the elements report.html.tmpl writes.
	allowedTags = map[string]bool{}
)

func init() {
	for _, m := range tagRE.FindAllString(pageTemplate, -1) {
		allowedTags[strings.ToLower(tagNameRE.FindStringSubmatch(m)[1])] = true
	}
	delete(allowedTags, "script")
	allowedTags["wbr"] = true // written by dots
}

// wellFormedSVG parses every inline SVG of a page as strict XML and
// returns how many elements of each name they hold.
func wellFormedSVG(t *testing.T, page string) map[string]int {
	t.Helper()
	svgs := svgRE.FindAllString(page, -1)
	if len(svgs) == 0 {
		t.Fatal("the page has no SVG")
	}
	counts := map[string]int{}
	for i, s := range svgs {
		dec := xml.NewDecoder(strings.NewReader(s))
		dec.Strict = true
		depth := 0
		for {
			tok, err := dec.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("SVG %d is not well-formed XML: %v\n%s", i, err, s)
			}
			switch el := tok.(type) {
			case xml.StartElement:
				if depth == 0 && (el.Name.Local != "svg" || el.Name.Space != "http://www.w3.org/2000/svg") {
					t.Errorf("SVG %d root = %v, want svg in the SVG namespace", i, el.Name)
				}
				depth++
				counts[el.Name.Local]++
			case xml.EndElement:
				depth--
			}
		}
		if depth != 0 {
			t.Errorf("SVG %d ends at depth %d", i, depth)
		}
	}
	counts["svg-documents"] = len(svgs)
	return counts
}

func render(t *testing.T, r Run) string {
	t.Helper()
	var page bytes.Buffer
	if err := HTML(&page, r); err != nil {
		t.Fatalf("HTML: %v", err)
	}
	return page.String()
}

func TestSVGWellFormed(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(testing.TB) Run
		// want: timeline + 4 stage charts + history; rows: 5 timeline
		// rows, measured rows and history cells.
		svgs int
	}{
		{"failed-held", failedHeldRun, 6},
		{"stopped", stoppedRun, 3},
		{"passed", passedRun, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			counts := wellFormedSVG(t, render(t, tc.run(t)))
			if counts["svg-documents"] != tc.svgs {
				t.Errorf("%d SVGs, want %d", counts["svg-documents"], tc.svgs)
			}
			if counts["rect"] == 0 || counts["title"] == 0 || counts["text"] == 0 {
				t.Errorf("element counts %v, want rects, titles and texts", counts)
			}
		})
	}
}

// TestSelfContained: nothing loads from elsewhere and nothing runs.
func TestSelfContained(t *testing.T) {
	for _, f := range fixtures {
		page := render(t, f.run(t))
		stripped := strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, "")
		for _, bad := range []string{"<script", "<link", "<img", "<iframe", "src=", "url(", "@import", "http://", "https://", " on"} {
			if bad == " on" {
				if m := regexp.MustCompile(`\son[a-z]+=`).FindString(stripped); m != "" {
					t.Errorf("%s: page has an event handler attribute %q", f.name, m)
				}
				continue
			}
			if strings.Contains(stripped, bad) {
				t.Errorf("%s: page contains %q; it must be self-contained", f.name, bad)
			}
		}
	}
}

// TestMachineStringsEscaped: DMI strings, disk models, stage and
// measurement names, notes and findings come from the machine under test;
// none may become markup in any context (text, attribute, SVG title).
func TestMachineStringsEscaped(t *testing.T) {
	payloads := []string{
		`<script>alert(1)</script>`,
		`"><img src=x onerror=alert(2)>`,
		`</title><script>alert(3)</script>`,
		`' onmouseover='alert(4)`,
		`]]><svg onload=alert(5)>`,
		`&lt;b&gt;already-escaped&amp;`,
	}
	evil := strings.Join(payloads, " ")
	r := failedHeldRun(t)
	inv := &r.Report.Inventory
	inv.System.Product, inv.System.Manufacturer, inv.System.Serial = evil, evil, evil
	inv.BIOS.Version, inv.Board.Product, inv.CPU.Model = evil, evil, evil
	inv.Disks[0].Model, inv.Disks[0].Serial, inv.Disks[0].Name = evil, evil, evil
	inv.NICs[0].Driver, inv.NICs[0].MAC = evil, evil
	inv.Memory.DIMMs[0].PartNumber, inv.Memory.DIMMs[0].Locator = evil, evil
	inv.Warnings = []string{evil}
	r.Report.Diff[0].Actual, r.Report.Diff[0].Note = evil, evil
	r.Report.Findings[0].Message = evil
	r.Report.Stages[0].Stage, r.Report.Stages[0].Summary = evil, evil
	r.Report.Stages[0].Measurements[0].Name, r.Report.Stages[0].Measurements[0].Detail = evil, evil
	r.Report.Stages[0].Measurements[2].Unit = evil
	r.Events = append(r.Events, protocol.Event{Kind: protocol.EventNote, Stage: evil, Note: evil, Time: at(90)},
		protocol.Event{Kind: protocol.EventHolding, Addr: evil, HostKey: evil, Time: at(120)})
	r.HoldAddr, r.HoldHostKey = "", ""
	r.History[0].ID, r.History[0].URL = evil, "javascript:alert(6)"
	r.Host, r.ID = evil, evil

	page := render(t, r)
	// Escaped text holds no raw '<', so every tag found is one the
	// template wrote: none may be a planted element or carry a planted
	// attribute.
	for _, tag := range tagRE.FindAllString(page, -1) {
		name := strings.ToLower(tagNameRE.FindStringSubmatch(tag)[1])
		if !allowedTags[name] {
			t.Errorf("page has a <%s> element the template never writes: %s", name, tag)
		}
		if m := eventAttrRE.FindString(quotedRE.ReplaceAllString(tag, `""`)); m != "" {
			t.Errorf("tag %s has an event handler attribute %q", tag, m)
		}
		if strings.Contains(strings.ToLower(tag), "javascript:") {
			t.Errorf("tag %s links to javascript:", tag)
		}
	}
	// The strings are shown, escaped, not dropped.
	if n := strings.Count(page, "&lt;script&gt;alert(1)&lt;/script&gt;"); n < 20 {
		t.Errorf("escaped payload appears %d times, want it in every place it was planted (≥ 20)", n)
	}
	if !strings.Contains(page, "&amp;lt;b&amp;gt;already-escaped&amp;amp;") {
		t.Error("an already-escaped string was not escaped again (it would render as markup-looking text)")
	}
	wellFormedSVG(t, page)

	// The JSON carries the strings verbatim (JSON escaping, no mangling).
	js, err := JSON(r)
	if err != nil {
		t.Fatal(err)
	}
	var d Document
	if err := json.Unmarshal(js, &d); err != nil {
		t.Fatal(err)
	}
	if d.Machine.System.Product != evil || d.Run.Host != evil {
		t.Errorf("JSON changed the strings: %q", d.Machine.System.Product)
	}
}

func TestBars(t *testing.T) {
	v := func(f float64) *float64 { return &f }
	holds := false
	s := Stage{Name: "storage", Measurements: []Measurement{
		{Name: "slow", Value: v(50), Unit: "MB/s", Status: verdict.Degraded,
			Validators: []Validator{{Op: verdict.OpGE, Limit: 100, OnFail: verdict.Degraded, Holds: &holds}},
			Baseline:   &MeasurementBaseline{Runs: 3, Mean: 125}},
		{Name: "errors", Value: v(0), Status: verdict.Pass, Validators: []Validator{{Op: verdict.OpEQ, Limit: 0, OnFail: verdict.Fail}}},
		{Name: "big", Value: v(3 * gib), Unit: "bytes", Status: verdict.Pass},
		{Name: "negative", Value: v(-5), Status: verdict.Pass},
		{Name: "skipped", Status: verdict.Skipped},
	}}
	b := newBars(s)
	if b == nil || len(b.Rows) != 4 {
		t.Fatalf("newBars = %+v, want 4 rows (the skipped one left out)", b)
	}
	// slow: scale 0..125×1.08 = 135: bar 37.04 %, limit 74.07 %, mean 92.59 %.
	slow := b.Rows[0]
	want := barRow{Name: "slow", Label: "50 MB/s", X: "0%", W: "37.04%", Class: "bar-degraded"}
	if slow.Name != want.Name || slow.Label != want.Label || slow.X != want.X || slow.W != want.W || slow.Class != want.Class {
		t.Errorf("slow row = %+v, want %+v", slow, want)
	}
	if len(slow.Marks) != 2 || slow.Marks[0].X != "74.07%" || slow.Marks[0].Class != "mark-degraded" || slow.Marks[1].X != "92.59%" || slow.Marks[1].Class != "mark-mean" {
		t.Errorf("slow marks = %+v, want the limit at 74.07%% and the mean at 92.59%%", slow.Marks)
	}
	if r := b.Rows[1]; r.W != "0%" || len(r.Marks) != 1 || r.Marks[0].X != "0%" || r.Marks[0].Class != "mark-fail" {
		t.Errorf("zero row = %+v, want an empty bar with the fail limit at 0", r)
	}
	if r := b.Rows[2]; r.Label != "3 GiB" || r.W != "92.59%" {
		t.Errorf("bytes row = %+v, want label 3 GiB and the bar at 1/1.08", r)
	}
	// negative: scale −5..0 (+8 %): the bar runs from −5 to 0.
	if r := b.Rows[3]; r.X != "0%" || r.W != "92.59%" {
		t.Errorf("negative row = %+v, want a bar from 0%% to the zero line at 92.59%%", r)
	}
	if !b.HasDegraded || !b.HasFail || !b.HasMean || b.Height != 4*rowHeight+4 {
		t.Errorf("legend flags / height = %v %v %v %d", b.HasDegraded, b.HasFail, b.HasMean, b.Height)
	}
	if newBars(Stage{Measurements: []Measurement{{Name: "x", Status: verdict.Error}}}) != nil {
		t.Error("newBars without measured values drew a chart")
	}
}

func TestTimeline(t *testing.T) {
	d := build(stoppedRun(t))
	tl := newTimeline(d)
	if tl == nil || len(tl.Rows) != 3 {
		t.Fatalf("timeline = %+v, want run, cpu and memory rows", tl)
	}
	// Run 0..420 s: cpu 30..150 s, memory from 150.5 s to the end, unfinished.
	cpu, mem := tl.Rows[1], tl.Rows[2]
	if cpu.X != "7.14%" || cpu.W != "28.57%" || cpu.Class != "bar-pass" || cpu.TimeoutX != "50%" {
		t.Errorf("cpu row = %+v, want 7.14%% + 28.57%%, PASS, timeout at 50%%", cpu)
	}
	if mem.X != "35.83%" || mem.W != "64.17%" || mem.Class != "bar-unfinished" || mem.Note != "did not finish" || mem.TimeoutX != "" {
		t.Errorf("memory row = %+v, want unfinished to the end, timeout off the chart", mem)
	}
	var labels []string
	for _, tk := range tl.Ticks {
		labels = append(labels, tk.Label)
	}
	if want := []string{"+0s", "+2m", "+4m", "+6m"}; !cmp.Equal(labels, want) {
		t.Errorf("ticks = %v, want %v", labels, want)
	}
	if newTimeline(build(Run{ID: "x"})) != nil {
		t.Error("a run without times got a timeline")
	}
}

func TestTickStep(t *testing.T) {
	for _, tc := range []struct {
		span, want time.Duration
	}{
		{3 * time.Second, time.Second},
		{84 * time.Second, 15 * time.Second},
		{91 * time.Second, 30 * time.Second},
		{7 * time.Minute, 2 * time.Minute},
		{32 * time.Minute, 10 * time.Minute},
		{5 * time.Hour, time.Hour},
		{30 * 24 * time.Hour, 6 * 24 * time.Hour},
	} {
		if got := tickStep(tc.span); got != tc.want {
			t.Errorf("tickStep(%v) = %v, want %v", tc.span, got, tc.want)
		}
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{fmtValue(18234.77, "units/s"), "18235 units/s"},
		{fmtValue(0.97312, ""), "0.97312"},
		{fmtValue(905969664, "bytes"), "864 MiB"},
		{fmtValue(242858590617, "bytes"), "226 GiB"},
		{fmtValue(14210, "IOPS"), "14210 IOPS"},
		{fmtValue(1873.25, "µs"), "1873.2 µs"},
		{fmtDuration(38.5), "38.5s"},
		{fmtDuration(1760), "29m20s"},
		{fmtDuration(0.25), "250ms"},
		{shortDuration(90 * time.Second), "1m30s"},
		{shortDuration(2 * time.Hour), "2h"},
		{shortDuration(90 * time.Minute), "1h30m"},
		{shortDuration(30 * time.Second), "30s"},
		{pct(-3), "0%"},
		{pct(33.333333), "33.33%"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestInventoryFields keeps the machine summary in step with the inventory:
// a fixture with every field the summary copies must show up in the JSON.
func TestInventoryFields(t *testing.T) {
	m := machine(serverInventory())
	if m.System.Product != "PowerEdge R650" || m.BIOS.Version != "1.9.2" || m.CPU.Threads != 32 || m.Memory.InstalledBytes != 256*gib ||
		m.Disks[0].SMART["percentage_used"] != 3 || m.NICs[0].SpeedMbps != 25000 || m.PCIe.Links != 2 || len(m.Warnings) != 1 {
		t.Errorf("machine(server) = %+v", m)
	}
	if m := machine(inventory.Inventory{}); m.Memory.ECC || m.Disks == nil || m.PCIe.Degraded == nil {
		t.Errorf("machine(empty) = %+v, want no ECC and empty lists", m)
	}
}

func BenchmarkHTML(b *testing.B) {
	r := failedHeldRun(b)
	for b.Loop() {
		if err := HTML(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJSON(b *testing.B) {
	r := failedHeldRun(b)
	for b.Loop() {
		if _, err := JSON(r); err != nil {
			b.Fatal(err)
		}
	}
}
