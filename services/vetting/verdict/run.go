package verdict

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"kiln.dev/kiln/services/vetting/spec"
)

// Finding is one reason for a run's verdict.
type Finding struct {
	// Source is "spec" or the stage name.
	Source  string `json:"source"`
	Status  Status `json:"status"`
	Message string `json:"message"`
}

// SpecStatus maps one spec diff result to a status: a match passes; a
// mismatch or a missing fact earns its severity (fail → FAIL, degraded →
// DEGRADED, info → PASS); an item that cannot be evaluated against the fact
// (a spec authoring error, not the hardware's) is an ERROR unless its
// severity is info.
func SpecStatus(r spec.Result) Status {
	if r.OK() || r.Severity == spec.SeverityInfo {
		return Pass
	}
	if r.Status == spec.StatusInvalid {
		return Error
	}
	if r.Severity == spec.SeverityDegraded {
		return Degraded
	}
	return Fail
}

// Run judges a whole run from the spec diff and the stage results, and lists
// the findings behind the verdict (every non-passing spec item and stage,
// most severe first). A run with nothing to judge is SKIPPED.
func Run(diff []spec.Result, stages []StageResult) (Status, []Finding) {
	var findings []Finding
	statuses := make([]Status, 0, len(diff)+len(stages))
	for _, r := range diff {
		s := SpecStatus(r)
		statuses = append(statuses, s)
		if s != Pass {
			findings = append(findings, Finding{Source: "spec", Status: s, Message: r.Problem})
		}
	}
	for _, st := range stages {
		statuses = append(statuses, st.Status)
		if st.Status != Pass && st.Status != Skipped {
			findings = append(findings, Finding{Source: st.Stage, Status: st.Status, Message: st.Summary})
		}
	}
	sort.SliceStable(findings, func(i, j int) bool { return rank(findings[i].Status) > rank(findings[j].Status) })
	return Worst(statuses...), findings
}

// Stats summarises one measurement over earlier runs.
type Stats struct {
	N      int     `json:"n"`
	Mean   float64 `json:"mean"`
	Stddev float64 `json:"stddev"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Baseline is what earlier runs of one model measured.
type Baseline struct {
	Model string `json:"model"`
	// Runs is how many runs contributed.
	Runs  int              `json:"runs"`
	Stats map[string]Stats `json:"stats"`
}

// NewBaseline summarises earlier runs (one measurement list per run) of a
// model. Only PASS and DEGRADED performance measurements (Better set) count:
// failed, errored or skipped values say nothing about normal speed.
func NewBaseline(model string, runs [][]Measurement) Baseline {
	values := map[string][]float64{}
	for _, run := range runs {
		for _, m := range run {
			if m.Better != None && (m.Status == Pass || m.Status == Degraded) {
				values[m.Name] = append(values[m.Name], m.Value)
			}
		}
	}
	b := Baseline{Model: model, Runs: len(runs), Stats: map[string]Stats{}}
	for name, vs := range values {
		st := Stats{N: len(vs), Min: vs[0], Max: vs[0]}
		var sum float64
		for _, v := range vs {
			sum += v
			st.Min, st.Max = math.Min(st.Min, v), math.Max(st.Max, v)
		}
		st.Mean = sum / float64(len(vs))
		var sq float64
		for _, v := range vs {
			sq += (v - st.Mean) * (v - st.Mean)
		}
		if len(vs) > 1 {
			st.Stddev = math.Sqrt(sq / float64(len(vs)-1))
		}
		b.Stats[name] = st
	}
	return b
}

// Policy says how far below its baseline a measurement may fall.
type Policy struct {
	// MinRuns is how many earlier values a measurement needs before it is
	// judged against them (default 3).
	MinRuns int
	// Tolerance is the allowed shortfall as a fraction of the mean
	// (default 0.2); the limit also leaves three standard deviations.
	Tolerance float64
}

func (p Policy) withDefaults() Policy {
	if p.MinRuns <= 0 {
		p.MinRuns = 3
	}
	if p.Tolerance <= 0 {
		p.Tolerance = 0.2
	}
	return p
}

// ApplyBaseline adds a DEGRADED validator to every performance measurement
// the baseline knows well enough and re-evaluates it. Measurements without a
// direction, without enough history, or not measured (SKIPPED, ERROR) are
// returned unchanged.
func ApplyBaseline(ms []Measurement, b Baseline, p Policy) []Measurement {
	p = p.withDefaults()
	out := make([]Measurement, len(ms))
	for i, m := range ms {
		out[i] = m
		st, ok := b.Stats[m.Name]
		if m.Better == None || !ok || st.N < p.MinRuns || m.Status == Skipped || m.Status == Error {
			continue
		}
		margin := math.Max(p.Tolerance*math.Abs(st.Mean), 3*st.Stddev)
		why := fmt.Sprintf("baseline of %s: mean %s over %d runs", b.Model, formatValue(st.Mean, m.Unit), st.N)
		v := Should(OpGE, st.Mean-margin, why)
		if m.Better == Lower {
			v = Should(OpLE, st.Mean+margin, why)
		}
		m.Validators = append(append([]Validator(nil), m.Validators...), v)
		out[i] = Evaluate(m)
	}
	return out
}

// ApplyBaselineToStages applies the baseline to every stage's measurements
// and re-judges the stages (keeping their tool errors and timeouts).
func ApplyBaselineToStages(rs []StageResult, b Baseline, p Policy) []StageResult {
	out := make([]StageResult, len(rs))
	for i, r := range rs {
		r.Measurements = ApplyBaseline(r.Measurements, b, p)
		var toolErr error
		if r.Error != "" {
			toolErr = errors.New(r.Error)
		}
		r.Status, r.Summary = Stage(r.Measurements, toolErr, r.Status == Timeout)
		out[i] = r
	}
	return out
}
