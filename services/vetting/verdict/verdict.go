// Package verdict turns measurements into verdicts. A stage reports
// measurements (a named value with a unit) each carrying validators (limits
// with the status a violation earns); Evaluate judges a measurement, Stage a
// stage and Run a whole run including the expected-spec diff.
//
// Statuses, from most to least severe when combined:
//
//	FAIL      the hardware is bad: a validator marked FAIL was violated
//	          (miscompares, read errors, a spec mismatch of severity fail)
//	TIMEOUT   the stage did not finish within its timeout
//	ERROR     the tool could not measure (cannot open a device, an ioctl is
//	          refused, out of memory): nothing is known about the hardware
//	DEGRADED  the hardware works but below expectation (throttling,
//	          corrected ECC errors, slower than the model's baseline)
//	PASS      every validator held
//	SKIPPED   nothing to measure (no EDAC driver, SMART on virtio)
//
// Tool errors are kept apart from hardware failures: an error while
// measuring makes a stage ERROR, never FAIL, unless a measurement taken
// before it already failed — evidence of bad hardware stands.
//
// Performance is judged against a baseline built from earlier runs of the
// same model (Baseline, ApplyBaseline): once MinRuns runs exist, a
// measurement that says which direction is better gets a DEGRADED validator
// at a fraction of the baseline mean, visible in the report like any other.
package verdict

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// Status is a measurement's, stage's or run's verdict.
type Status string

// Statuses.
const (
	Pass     Status = "PASS"
	Fail     Status = "FAIL"
	Degraded Status = "DEGRADED"
	Skipped  Status = "SKIPPED"
	Error    Status = "ERROR"
	Timeout  Status = "TIMEOUT"
)

// rank orders statuses by severity for Worst.
func rank(s Status) int {
	switch s {
	case Fail:
		return 5
	case Timeout:
		return 4
	case Error:
		return 3
	case Degraded:
		return 2
	case Pass:
		return 1
	}
	return 0 // Skipped and unset
}

// Worst combines statuses: FAIL > TIMEOUT > ERROR > DEGRADED > PASS > SKIPPED.
// No statuses (or only SKIPPED) gives SKIPPED.
func Worst(ss ...Status) Status {
	w := Skipped
	for _, s := range ss {
		if rank(s) > rank(w) {
			w = s
		}
	}
	return w
}

// Op is a validator's comparison.
type Op string

// Comparisons; a validator holds when "value Op Limit" is true.
const (
	OpLT Op = "<"
	OpLE Op = "<="
	OpEQ Op = "=="
	OpNE Op = "!="
	OpGE Op = ">="
	OpGT Op = ">"
)

// Validator is a limit on a measurement.
type Validator struct {
	Op    Op      `json:"op"`
	Limit float64 `json:"limit"`
	// OnFail is the status a violation earns: Fail (default) or Degraded.
	OnFail Status `json:"on_fail"`
	// Why says what the limit stands for ("no miscompares").
	Why string `json:"why,omitempty"`
}

// Holds reports whether value satisfies the validator.
func (v Validator) Holds(value float64) bool {
	switch v.Op {
	case OpLT:
		return value < v.Limit
	case OpLE:
		return value <= v.Limit
	case OpEQ:
		return value == v.Limit
	case OpNE:
		return value != v.Limit
	case OpGE:
		return value >= v.Limit
	case OpGT:
		return value > v.Limit
	}
	return false
}

// Direction says which way a performance measurement improves.
type Direction string

// Directions; None leaves a measurement out of baseline comparisons.
const (
	None   Direction = ""
	Higher Direction = "higher"
	Lower  Direction = "lower"
)

// Measurement is one measured value with its limits and outcome.
type Measurement struct {
	// Name is dotted, e.g. "cpu.compute_errors" or "storage.sda.read_mbps".
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
	// Better marks a performance measurement for baseline comparison.
	Better     Direction   `json:"better,omitempty"`
	Validators []Validator `json:"validators,omitempty"`
	// Status is set by Evaluate (or by Skip / Errored for a value that could
	// not be taken).
	Status Status `json:"status,omitempty"`
	// Message explains the status: the violated validator, or why the value
	// is missing. Evaluate rewrites it.
	Message string `json:"message,omitempty"`
	// Detail is the stage's own context for people ("first miscompare at
	// offset 0x1f000"); Evaluate keeps it.
	Detail string `json:"detail,omitempty"`
}

// Measure returns a measurement with validators, evaluated.
func Measure(name string, value float64, unit string, vs ...Validator) Measurement {
	return Evaluate(Measurement{Name: name, Value: value, Unit: unit, Validators: vs})
}

// Skip returns a measurement that could not apply (no EDAC, no SMART).
func Skip(name, why string) Measurement {
	return Measurement{Name: name, Status: Skipped, Message: why}
}

// Errored returns a measurement the tool failed to take.
func Errored(name string, err error) Measurement {
	return Measurement{Name: name, Status: Error, Message: err.Error()}
}

// Must returns a validator that fails the measurement when violated.
func Must(op Op, limit float64, why string) Validator {
	return Validator{Op: op, Limit: limit, OnFail: Fail, Why: why}
}

// Should returns a validator that marks the measurement degraded.
func Should(op Op, limit float64, why string) Validator {
	return Validator{Op: op, Limit: limit, OnFail: Degraded, Why: why}
}

// Evaluate sets m.Status and m.Message from its validators. Measurements
// already marked SKIPPED or ERROR are returned unchanged; NaN values are an
// ERROR.
func Evaluate(m Measurement) Measurement {
	if m.Status == Skipped || m.Status == Error {
		return m
	}
	if math.IsNaN(m.Value) || math.IsInf(m.Value, 0) {
		m.Status, m.Message = Error, "the measured value is not a finite number"
		return m
	}
	m.Status, m.Message = Pass, ""
	for _, v := range m.Validators {
		if v.Holds(m.Value) {
			continue
		}
		on := v.OnFail
		if on != Degraded {
			on = Fail
		}
		if rank(on) > rank(m.Status) || m.Message == "" {
			msg := fmt.Sprintf("%s = %s, want %s %s", m.Name, formatValue(m.Value, m.Unit), v.Op, formatValue(v.Limit, m.Unit))
			if v.Why != "" {
				msg += " (" + v.Why + ")"
			}
			if rank(on) > rank(m.Status) {
				m.Status = on
			}
			m.Message = msg
		}
	}
	return m
}

func formatValue(v float64, unit string) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if math.Abs(v) >= 100 || v != math.Trunc(v) {
		s = strconv.FormatFloat(v, 'g', 6, 64)
		if f, err := strconv.ParseFloat(s, 64); err == nil && math.Abs(f) < 1e15 {
			s = strconv.FormatFloat(f, 'f', -1, 64)
		}
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

// StageResult is one stage's outcome.
type StageResult struct {
	Stage        string        `json:"stage"`
	Status       Status        `json:"status"`
	Started      time.Time     `json:"started"`
	Ended        time.Time     `json:"ended"`
	Measurements []Measurement `json:"measurements"`
	// Error is the tool error that stopped the stage (ERROR), or what timed
	// out (TIMEOUT); kept even when an earlier measurement FAILed.
	Error string `json:"error,omitempty"`
	// Summary is one line for people: why the stage has its status.
	Summary string `json:"summary,omitempty"`
}

// Duration is the stage's wall time.
func (r StageResult) Duration() time.Duration { return r.Ended.Sub(r.Started) }

// Stage judges a stage from its (evaluated) measurements, the tool error that
// ended it (nil if none) and whether it timed out. A failed measurement wins
// over the error or timeout (the hardware evidence stands); otherwise a
// timeout is TIMEOUT and a tool error ERROR, never FAIL. A stage without any
// measurement that ran cleanly is SKIPPED.
func Stage(ms []Measurement, toolErr error, timedOut bool) (Status, string) {
	worst := Skipped
	var why string
	for _, m := range ms {
		if rank(m.Status) > rank(worst) || why == "" && m.Status == worst {
			worst, why = m.Status, m.Message
		}
	}
	switch {
	case worst == Fail:
		return Fail, why
	case timedOut:
		msg := "the stage did not finish in time"
		if toolErr != nil {
			msg = toolErr.Error()
		}
		return Timeout, msg
	case toolErr != nil:
		return Error, toolErr.Error()
	}
	if worst == Pass {
		why = fmt.Sprintf("%d measurements passed", countStatus(ms, Pass))
	}
	return worst, why
}

func countStatus(ms []Measurement, s Status) int {
	n := 0
	for _, m := range ms {
		if m.Status == s {
			n++
		}
	}
	return n
}
