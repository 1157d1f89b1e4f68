package report

import (
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"

	"kiln.dev/kiln/services/vetting/verdict"
)

//go:embed report.html.tmpl
var pageTemplate string

var tmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"cls":      func(s verdict.Status) string { return statusClass(s) },
	"when":     fmtTime,
	"dur":      fmtDuration,
	"num":      fmtValue,
	"bytes":    func(n int64) string { return humanBytes(float64(n)) },
	"val":      optValue,
	"limit":    limitText,
	"baseline": baselineText,
	"state":    stateText,
	"join":     strings.Join,
	"add":      func(a, b int) int { return a + b },
	"anchor":   anchor,
	"dots":     dots,
	"yesno": func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	},
}).Parse(pageTemplate))

// page is what the template renders: the document plus the layout of its
// charts.
type page struct {
	Doc   Document
	Title string
	// Lead is the headline without the verdict the badge shows.
	Lead         string
	Top          []verdict.Finding
	MoreFindings int
	SpecProblems int
	Timeline     *timeline
	Stages       []stageView
	History      *historyChart
	// Recent is the last earlier runs, newest first, for the history table.
	Recent []HistoryItem
}

type stageView struct {
	Stage
	Chart *bars
}

// topFindings is how many findings the header lists.
const topFindings = 5

// recentRuns is how many earlier runs the history table lists.
const recentRuns = 10

// HTML writes the run's report as one self-contained HTML page.
func HTML(w io.Writer, r Run) error {
	d := build(r)
	p := page{Doc: d, Lead: d.lead(), Timeline: newTimeline(d), History: newHistory(d)}
	p.Title = fmt.Sprintf("%s — %s — kiln vetting run %s", d.Run.Host, cmp.Or(string(d.Verdict), stateText(d.Run.State)), d.Run.ID)
	p.Top = d.Findings
	if len(p.Top) > topFindings {
		p.Top, p.MoreFindings = p.Top[:topFindings], len(d.Findings)-topFindings
	}
	for _, s := range d.Spec {
		if s.Outcome != verdict.Pass {
			p.SpecProblems++
		}
	}
	for _, s := range d.Stages {
		p.Stages = append(p.Stages, stageView{Stage: s, Chart: newBars(s)})
	}
	for i := len(d.History) - 1; i >= 0 && len(p.Recent) < recentRuns; i-- {
		p.Recent = append(p.Recent, d.History[i])
	}
	if err := tmpl.Execute(w, p); err != nil {
		return fmt.Errorf("rendering the report of run %s: %w", r.ID, err)
	}
	return nil
}

func optValue(v *float64, unit string) string {
	if v == nil {
		return "—"
	}
	return fmtValue(*v, unit)
}

func limitText(v Validator, unit string) string {
	s := opText(v.Op) + " " + fmtValue(v.Limit, unit)
	if v.OnFail == verdict.Degraded {
		s += " (else degraded)"
	}
	return s
}

func baselineText(b *MeasurementBaseline, unit string) string {
	if b == nil {
		return ""
	}
	s := fmt.Sprintf("mean %s over %d runs", fmtValue(b.Mean, unit), b.Runs)
	if b.DeltaPercent != nil {
		s += fmt.Sprintf(", %s%%", signed(*b.DeltaPercent))
	}
	return s
}

func signed(f float64) string {
	s := strconv.FormatFloat(f, 'f', 1, 64)
	if f >= 0 {
		s = "+" + s
	}
	return s
}

// anchor makes a fragment id from a stage name: letters, digits and '-'.
func anchor(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, name)
}

// dots lets a dotted name ("storage.nvme0n1.seq_read_mbps") wrap after its
// dots in narrow table cells without adding characters a copy would pick
// up. Each part is escaped; only the <wbr> elements are markup.
func dots(name string) template.HTML {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = template.HTMLEscapeString(p)
	}
	return template.HTML(strings.Join(parts, ".<wbr>"))
}
