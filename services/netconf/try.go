package netconf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"kiln.dev/kiln/services/config"
)

// DefaultTryTimeout is how long a trial config runs before it reverts
// unless confirmed.
const DefaultTryTimeout = 60 * time.Second

// Clock schedules the revert; tests inject a fake.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a scheduled call.
type Timer interface{ Stop() bool }

// SystemClock is the real clock.
type SystemClock struct{}

func (SystemClock) Now() time.Time { return time.Now() }

func (SystemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Errors of the try state machine callers branch on.
var (
	ErrTryPending = errors.New("a trial config is pending: confirm it or wait for it to revert")
	ErrNoTrial    = errors.New("no trial config is pending")
)

// ApplyFunc applies a config's network and firewall sections.
type ApplyFunc func(ctx context.Context, c config.Config) (Result, error)

// Guard is the safe-change state machine. It has two states:
//
//	running ──Try(c) ok──▶ trying(c, deadline)
//	trying ──Confirm──▶ running(c)
//	trying ──deadline──▶ running (the previous config is applied again)
//
// A Try that fails leaves the running config in place (a half-applied one is
// rolled back at once). Every apply — start, try, revert, and re-applies on
// link events — goes through the Guard and never interleaves.
type Guard struct {
	apply ApplyFunc
	clock Clock
	log   *slog.Logger

	// mu guards the fields below and is held across applies.
	mu      sync.Mutex
	running config.Config
	trial   *trial
	seq     int
}

type trial struct {
	cfg      config.Config
	deadline time.Time
	timer    Timer
	id       int
}

// TryStatus describes a pending trial.
type TryStatus struct {
	Deadline time.Time `json:"deadline"`
	// RevertsIn is the time left when the status was taken.
	RevertsIn time.Duration `json:"reverts_in_ns"`
}

// NewGuard returns a Guard in the running state with an empty config.
func NewGuard(apply ApplyFunc, clock Clock, log *slog.Logger) *Guard {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Guard{apply: apply, clock: clock, log: log}
}

// Start makes c the running config and applies it.
func (g *Guard) Start(ctx context.Context, c config.Config) (Result, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running = c
	return g.apply(ctx, c)
}

// Reapply applies the config in effect again (the trial's while one runs);
// with nothing changed outside kiln its result is empty.
func (g *Guard) Reapply(ctx context.Context) (Result, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.running
	if g.trial != nil {
		c = g.trial.cfg
	}
	return g.apply(ctx, c)
}

// Try applies c and reverts to the running config after timeout unless
// Confirm is called first. An invalid c, or one that does not fit the links
// present, changes nothing.
func (g *Guard) Try(ctx context.Context, c config.Config, timeout time.Duration) (Result, error) {
	if err := c.Validate(); err != nil {
		return Result{}, err
	}
	if timeout <= 0 {
		timeout = DefaultTryTimeout
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.trial != nil {
		return Result{}, ErrTryPending
	}
	res, err := g.apply(ctx, c)
	if err != nil {
		if !errPlan(err) {
			// Something was half applied: go back now.
			if _, rerr := g.apply(context.WithoutCancel(ctx), g.running); rerr != nil {
				g.log.Error("restoring the running network config after a failed try", "err", rerr)
			}
		}
		return res, fmt.Errorf("trying the new config: %w", err)
	}
	g.seq++
	id := g.seq
	g.trial = &trial{cfg: c, deadline: g.clock.Now().Add(timeout), id: id}
	g.trial.timer = g.clock.AfterFunc(timeout, func() { g.revert(id) })
	g.log.Info("trying a new network config; confirm it or it reverts", "timeout", timeout, "steps", len(res.Plan))
	return res, nil
}

// Confirm keeps the trial config: it becomes the running one.
func (g *Guard) Confirm() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.trial == nil {
		return ErrNoTrial
	}
	g.trial.timer.Stop()
	g.running = g.trial.cfg
	g.trial = nil
	g.log.Info("new network config confirmed")
	return nil
}

func (g *Guard) revert(id int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.trial == nil || g.trial.id != id {
		return // confirmed, or a newer trial
	}
	g.trial = nil
	res, err := g.apply(context.Background(), g.running)
	if err != nil {
		g.log.Error("reverting to the previous network config", "err", err)
		return
	}
	g.log.Warn("trial network config not confirmed in time: reverted", "steps", len(res.Plan))
}

// Pending returns the trial's status, nil when none runs.
func (g *Guard) Pending() *TryStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.trial == nil {
		return nil
	}
	return &TryStatus{Deadline: g.trial.deadline, RevertsIn: g.trial.deadline.Sub(g.clock.Now())}
}

// Running returns the confirmed config.
func (g *Guard) Running() config.Config {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running
}
