package supervisor

import "time"

// Clock is the supervisor's source of time; tests pass their own.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Backoff is the restart policy shared by all services.
type Backoff struct {
	// Base is the delay before the first restart; it doubles after every failure.
	Base time.Duration
	// Max caps the delay; a crash-looping service is retried this often.
	Max time.Duration
	// StableAfter is how long a service must stay ready to reset the delay and
	// leave the crash-loop state.
	StableAfter time.Duration
	// CrashLoopFailures failures within CrashLoopWindow mean a crash loop.
	CrashLoopFailures int
	CrashLoopWindow   time.Duration
}

// DefaultBackoff is 100 ms doubling to 30 s, reset after 10 s ready, and a crash
// loop at 5 failures within 60 s.
func DefaultBackoff() Backoff {
	return Backoff{
		Base:              100 * time.Millisecond,
		Max:               30 * time.Second,
		StableAfter:       10 * time.Second,
		CrashLoopFailures: 5,
		CrashLoopWindow:   60 * time.Second,
	}
}

func (b Backoff) withDefaults() Backoff {
	d := DefaultBackoff()
	if b.Base <= 0 {
		b.Base = d.Base
	}
	if b.Max < b.Base {
		b.Max = max(d.Max, b.Base)
	}
	if b.StableAfter <= 0 {
		b.StableAfter = d.StableAfter
	}
	if b.CrashLoopFailures <= 0 {
		b.CrashLoopFailures = d.CrashLoopFailures
	}
	if b.CrashLoopWindow <= 0 {
		b.CrashLoopWindow = d.CrashLoopWindow
	}
	return b
}

// restartTracker follows one service's failures and decides the delay before
// its next start. Only the service's own goroutine uses it.
type restartTracker struct {
	policy    Backoff
	next      time.Duration
	failures  []time.Time
	crashLoop bool
}

// failed records a failure at now and returns the delay before the next start.
func (r *restartTracker) failed(now time.Time) time.Duration {
	keep := r.failures[:0]
	for _, t := range r.failures {
		if now.Sub(t) < r.policy.CrashLoopWindow {
			keep = append(keep, t)
		}
	}
	r.failures = append(keep, now)
	if len(r.failures) >= r.policy.CrashLoopFailures {
		r.crashLoop = true
	}
	if r.crashLoop {
		return r.policy.Max
	}
	d := r.next
	if d <= 0 {
		d = r.policy.Base
	}
	r.next = min(2*d, r.policy.Max)
	return d
}

// reset forgets past failures after a stable run or an operator's restart.
func (r *restartTracker) reset() {
	r.next = 0
	r.failures = r.failures[:0]
	r.crashLoop = false
}
