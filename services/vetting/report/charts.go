package report

import (
	"cmp"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"kiln.dev/kiln/services/vetting/verdict"
)

// The charts are laid out here and drawn by the template, so every string
// in them goes through html/template's escaping. Horizontal positions are
// percentages of the chart's width: the SVG stretches to any screen while
// its text keeps its size (no viewBox scaling that would shrink labels to
// nothing on a phone). Labels sit above their bars for the same reason.

const (
	rowHeight = 36 // a label line and a bar below it
	barTop    = 18 // the bar's offset within its row
	barHeight = 12
)

// timeline is the Gantt chart of the run and its stages.
type timeline struct {
	Height int
	AxisY  int // bottom of the rows: tick labels go below
	Rows   []timelineRow
	Ticks  []tick
}

type timelineRow struct {
	Label, Note  string
	TextY, BarY  int
	X, W         string // percent
	Class, Title string
	// TimeoutX marks where the stage's timeout fell; empty: off the chart.
	TimeoutX string
}

type tick struct {
	X, Label, Anchor string
}

// newTimeline lays out the run row and one row per stage that has a start;
// nil when nothing has times.
func newTimeline(d Document) *timeline {
	var t0, t1 time.Time
	extend := func(t time.Time) {
		if t.IsZero() {
			return
		}
		if t0.IsZero() || t.Before(t0) {
			t0 = t
		}
		if t.After(t1) {
			t1 = t
		}
	}
	extend(d.Run.Started)
	extend(d.Run.Ended)
	for _, s := range d.Stages {
		extend(s.Started)
		extend(s.Ended)
	}
	if t0.IsZero() || !t1.After(t0) {
		return nil
	}
	span := t1.Sub(t0)
	pos := func(t time.Time) float64 { return float64(t.Sub(t0)) / float64(span) * 100 }
	tl := &timeline{}
	add := func(r timelineRow, from, to time.Time) {
		y := len(tl.Rows) * rowHeight
		r.TextY, r.BarY = y+13, y+barTop
		x, w := pos(from), pos(to)-pos(from)
		r.X, r.W = pct(x), pct(math.Max(w, 0.5))
		tl.Rows = append(tl.Rows, r)
	}
	runFrom, runTo := d.Run.Started, d.Run.Ended
	if runFrom.IsZero() {
		runFrom = t0
	}
	if runTo.IsZero() {
		runTo = t1
	}
	runNote := stateText(d.Run.State)
	if d.Run.DurationSeconds > 0 {
		runNote = fmtDuration(d.Run.DurationSeconds)
	}
	add(timelineRow{Label: "run", Note: runNote, Class: "bar-run",
		Title: fmt.Sprintf("run %s: %s → %s", d.Run.ID, fmtTime(runFrom), fmtTime(runTo))}, runFrom, runTo)
	for _, s := range d.Stages {
		if s.Started.IsZero() {
			continue
		}
		end, class, note := s.Ended, "bar-"+statusClass(s.Status), string(s.Status)
		if !s.Finished || end.IsZero() {
			end, class, note = t1, "bar-unfinished", "did not finish"
		}
		if s.DurationSeconds > 0 {
			note += " · " + fmtDuration(s.DurationSeconds)
		}
		r := timelineRow{Label: s.Name, Note: note, Class: class,
			Title: fmt.Sprintf("%s: %s, %s → %s", s.Name, note, fmtTime(s.Started), fmtTime(end))}
		if s.TimeoutSeconds > 0 {
			if at := s.Started.Add(time.Duration(s.TimeoutSeconds * float64(time.Second))); !at.After(t1) {
				r.TimeoutX = pct(pos(at))
			}
		}
		add(r, s.Started, end)
	}
	tl.AxisY = len(tl.Rows) * rowHeight
	tl.Height = tl.AxisY + 18
	step := tickStep(span)
	for at := time.Duration(0); at <= span; at += step {
		x := float64(at) / float64(span) * 100
		anchor := "middle"
		switch {
		case at == 0:
			anchor = "start"
		case x > 92:
			anchor = "end"
		}
		tl.Ticks = append(tl.Ticks, tick{X: pct(x), Label: "+" + shortDuration(at), Anchor: anchor})
	}
	return tl
}

// tickStep picks a round interval giving at most six ticks over span.
func tickStep(span time.Duration) time.Duration {
	for _, s := range []time.Duration{
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
	} {
		if span/s <= 5 {
			return s
		}
	}
	return span / 5
}

// bars is one stage's measurement chart.
type bars struct {
	Height int
	Rows   []barRow
	// Which markers occur, for the legend.
	HasFail, HasDegraded, HasMean bool
}

type barRow struct {
	Name, Label  string
	TextY, BarY  int
	X, W         string // the bar, percent
	Class, Title string
	Marks        []mark
}

type mark struct {
	X, Class, Title string
	Y1, Y2          int
}

// newBars charts a stage's measured values. Each row is normalised to its
// own scale — from 0 (or the lowest value) to the largest of the value, its
// limits and the baseline mean, plus a margin — so measurements of
// different units share one chart; the label carries the real number.
// Rows without a value (skipped, errored) are left to the table; nil when
// none has one.
func newBars(s Stage) *bars {
	b := &bars{}
	for _, m := range s.Measurements {
		if m.Value == nil {
			continue
		}
		v := *m.Value
		lo, hi := math.Min(0, v), math.Max(0, v)
		for _, val := range m.Validators {
			lo, hi = math.Min(lo, val.Limit), math.Max(hi, val.Limit)
		}
		if m.Baseline != nil {
			lo, hi = math.Min(lo, m.Baseline.Mean), math.Max(hi, m.Baseline.Mean)
		}
		if hi == lo {
			hi = lo + 1
		}
		hi += (hi - lo) * 0.08
		pos := func(x float64) float64 { return (x - lo) / (hi - lo) * 100 }
		zero, at := pos(0), pos(v)
		y := len(b.Rows) * rowHeight
		r := barRow{Name: m.Name, Label: fmtValue(v, m.Unit), TextY: y + 13, BarY: y + barTop,
			X: pct(math.Min(zero, at)), W: pct(math.Abs(at - zero)), Class: "bar-" + statusClass(m.Status),
			Title: fmt.Sprintf("%s = %s (%s)", m.Name, fmtValue(v, m.Unit), m.Status)}
		if len(m.Validators) == 0 && m.Baseline == nil {
			// Nothing to compare with: the bar only carries the label.
			r.Class = "bar-plain"
		}
		for _, val := range m.Validators {
			class := "mark-fail"
			if val.OnFail == verdict.Degraded {
				class = "mark-degraded"
				b.HasDegraded = true
			} else {
				b.HasFail = true
			}
			title := "limit " + opText(val.Op) + " " + fmtValue(val.Limit, m.Unit)
			if val.Why != "" {
				title += " (" + val.Why + ")"
			}
			r.Marks = append(r.Marks, mark{X: pct(pos(val.Limit)), Class: class, Title: title, Y1: y + barTop - 4, Y2: y + barTop + barHeight + 4})
		}
		if m.Baseline != nil {
			b.HasMean = true
			r.Marks = append(r.Marks, mark{X: pct(pos(m.Baseline.Mean)), Class: "mark-mean",
				Title: fmt.Sprintf("baseline mean %s over %d runs", fmtValue(m.Baseline.Mean, m.Unit), m.Baseline.Runs),
				Y1:    y + barTop - 4, Y2: y + barTop + barHeight + 4})
		}
		b.Rows = append(b.Rows, r)
	}
	if len(b.Rows) == 0 {
		return nil
	}
	b.Height = len(b.Rows)*rowHeight + 4
	return b
}

// historyChart is a strip of the host's runs, oldest first, this run last.
type historyChart struct {
	Width, Height int
	Cells         []cell
}

type cell struct {
	X            int
	Class, Title string
	Current      bool
}

// maxHistory is how many earlier runs the strip shows.
const maxHistory = 29

func newHistory(d Document) *historyChart {
	items := d.History
	if len(items) > maxHistory {
		items = items[len(items)-maxHistory:]
	}
	h := &historyChart{Height: 22}
	add := func(st verdict.Status, state, title string, current bool) {
		class := "bar-" + statusClass(st)
		if st == "" && state != "" {
			class = "bar-unfinished"
		}
		h.Cells = append(h.Cells, cell{X: len(h.Cells)*20 + 3, Class: class, Title: title, Current: current})
	}
	for _, it := range items {
		add(it.Verdict, it.State, fmt.Sprintf("run %s: %s, %s", it.ID, cmp.Or(string(it.Verdict), stateText(it.State)), fmtTime(it.Ended)), false)
	}
	add(d.Verdict, d.Run.State, fmt.Sprintf("this run %s: %s", d.Run.ID, cmp.Or(string(d.Verdict), stateText(d.Run.State))), true)
	h.Width = len(h.Cells)*20 + 6
	return h
}

func statusClass(s verdict.Status) string {
	switch s {
	case verdict.Pass, verdict.Fail, verdict.Degraded, verdict.Error, verdict.Timeout, verdict.Skipped:
		return strings.ToLower(string(s))
	}
	return "none"
}

func pct(f float64) string {
	f = math.Max(0, math.Min(100, f))
	return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64) + "%"
}

// fmtValue renders a value for people: bytes in binary units, other
// numbers to five significant digits.
func fmtValue(v float64, unit string) string {
	if unit == "bytes" {
		return humanBytes(v)
	}
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if v != math.Trunc(v) || math.Abs(v) >= 1e15 {
		s = strconv.FormatFloat(v, 'g', 5, 64)
		if f, err := strconv.ParseFloat(s, 64); err == nil && math.Abs(f) < 1e15 {
			s = strconv.FormatFloat(f, 'f', -1, 64)
		}
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

// humanBytes renders bytes in binary units to three significant digits.
func humanBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v, i := n, 0
	for math.Abs(v) >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	s := strconv.FormatFloat(v, 'g', 3, 64)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		s = strconv.FormatFloat(f, 'f', -1, 64)
	}
	return s + " " + units[i]
}

func opText(op verdict.Op) string {
	switch op {
	case verdict.OpGE:
		return "≥"
	case verdict.OpLE:
		return "≤"
	case verdict.OpEQ:
		return "="
	case verdict.OpNE:
		return "≠"
	}
	return string(op)
}

// fmtDuration renders seconds as 1h2m3s, 4m5s, 6.5s or 120ms.
func fmtDuration(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// shortDuration renders a tick offset: 0s, 30s, 2m, 1h30m.
func shortDuration(d time.Duration) string {
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}
