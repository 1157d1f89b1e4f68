// Package stages holds the burn-in stages the vetting agent runs — CPU,
// memory, storage and network — and the runner that gives each its timeout
// and turns what it measured into a verdict.StageResult.
//
// A stage returns measurements (with validators) and an error. The error is a
// tool error — the stage could not measure (a device would not open, memory
// could not be mapped) — and makes the stage ERROR, never FAIL; hardware
// faults are measurements that violate a validator (miscompares, read
// errors, grown defects) and make it FAIL. A stage that outlives its timeout
// is TIMEOUT, keeping the measurements it returns within a grace period.
//
// Stages read counters (thermal throttling, machine checks, EDAC) below
// Env.Root, so they run against captured trees in tests, and they honour
// their context: the runner cancels it at the timeout.
package stages

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"kiln.dev/kiln/services/vetting/verdict"
)

// Stage is one burn-in step.
type Stage interface {
	// Name is the stage's name in reports: cpu, memory, storage, network.
	Name() string
	// Run measures until done or ctx ends; the error is a tool error.
	Run(ctx context.Context, env Env) ([]verdict.Measurement, error)
}

// Env is what a stage gets from the runner.
type Env struct {
	// Root is the machine's root for /sys and /proc ("/" live).
	Root string
	// Logger has a component attribute; never nil inside a stage.
	Logger *slog.Logger
	// Progress reports how far the stage is (0–1) with a short note; never
	// nil inside a stage.
	Progress func(fraction float64, note string)
	// Now is the clock; never nil inside a stage.
	Now func() time.Time
}

// Planned is a stage with its timeout.
type Planned struct {
	Stage   Stage
	Timeout time.Duration
}

// EventKind says what a runner event reports.
type EventKind string

// Runner events.
const (
	EventStart    EventKind = "stage_start"
	EventProgress EventKind = "stage_progress"
	EventEnd      EventKind = "stage_end"
)

// Event is a runner progress report for the orchestrator's live view.
type Event struct {
	Kind     EventKind
	Stage    string
	Time     time.Time
	Fraction float64
	Note     string
	// Timeout is set on EventStart, Result on EventEnd.
	Timeout time.Duration
	Result  *verdict.StageResult
}

// Runner runs planned stages one after the other.
type Runner struct {
	Env Env
	// Emit receives events; nil drops them. It is called from the stage's
	// goroutine for progress events, so it must be safe for concurrent use
	// and return quickly.
	Emit func(Event)
	// Grace is how long a timed-out stage may take to hand back its partial
	// measurements (default 5 s).
	Grace time.Duration
}

func (r *Runner) env() Env {
	e := r.Env
	if e.Root == "" {
		e.Root = "/"
	}
	if e.Logger == nil {
		e.Logger = slog.New(slog.DiscardHandler)
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	return e
}

func (r *Runner) emit(ev Event) {
	if r.Emit != nil {
		r.Emit(ev)
	}
}

// Run runs every planned stage and returns their results in order. When ctx
// ends, the current stage ends as ERROR and the remaining ones are not run
// (and not returned).
func (r *Runner) Run(ctx context.Context, plan []Planned) []verdict.StageResult {
	var out []verdict.StageResult
	for _, p := range plan {
		if ctx.Err() != nil {
			break
		}
		out = append(out, r.RunOne(ctx, p))
	}
	return out
}

type outcome struct {
	ms  []verdict.Measurement
	err error
}

// RunOne runs a single stage under its timeout and judges it.
func (r *Runner) RunOne(ctx context.Context, p Planned) verdict.StageResult {
	env := r.env()
	name := p.Stage.Name()
	env.Logger = env.Logger.With("stage", name)
	env.Progress = func(f float64, note string) {
		r.emit(Event{Kind: EventProgress, Stage: name, Time: env.Now(), Fraction: f, Note: note})
	}
	start := env.Now()
	r.emit(Event{Kind: EventStart, Stage: name, Time: start, Timeout: p.Timeout})

	sctx, cancel := context.WithCancel(ctx)
	if p.Timeout > 0 {
		sctx, cancel = context.WithTimeout(ctx, p.Timeout)
	}
	defer cancel()
	done := make(chan outcome, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				done <- outcome{err: fmt.Errorf("stage %s panicked: %v\n%s", name, v, debug.Stack())}
			}
		}()
		ms, err := p.Stage.Run(sctx, env)
		done <- outcome{ms, err}
	}()

	var o outcome
	timedOut := false
	select {
	case o = <-done:
		timedOut = errors.Is(sctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	case <-sctx.Done():
		timedOut = ctx.Err() == nil
		grace := r.Grace
		if grace <= 0 {
			grace = 5 * time.Second
		}
		t := time.NewTimer(grace)
		select {
		case o = <-done:
		case <-t.C:
			o.err = fmt.Errorf("stage %s did not stop within %s of its end; its measurements are lost", name, grace)
			env.Logger.Warn("stage ignored its deadline", "grace", grace)
		}
		t.Stop()
	}

	res := verdict.StageResult{Stage: name, Started: start, Ended: env.Now()}
	for _, m := range o.ms {
		res.Measurements = append(res.Measurements, verdict.Evaluate(m))
	}
	if res.Measurements == nil {
		res.Measurements = []verdict.Measurement{}
	}
	toolErr := o.err
	switch {
	case timedOut:
		if toolErr == nil || errors.Is(toolErr, context.DeadlineExceeded) {
			toolErr = fmt.Errorf("stage %s did not finish within its timeout of %s", name, p.Timeout)
		}
	case ctx.Err() != nil:
		toolErr = fmt.Errorf("stage %s stopped: %w", name, ctx.Err())
	}
	if toolErr != nil {
		res.Error = toolErr.Error()
	}
	res.Status, res.Summary = verdict.Stage(res.Measurements, toolErr, timedOut)
	if res.Status == verdict.Error || res.Status == verdict.Timeout {
		env.Logger.Warn("stage ended without a verdict on the hardware", "status", res.Status, "error", res.Error)
	}
	r.emit(Event{Kind: EventEnd, Stage: name, Time: res.Ended, Result: &res})
	return res
}
