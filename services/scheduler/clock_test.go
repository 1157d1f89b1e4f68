package scheduler

import (
	"sync"
	"testing"
	"time"
)

// manualClock is a clock that moves only when the test says: After's
// channels receive once Set moves the time to or past their deadline.
type manualClock struct {
	// mu guards now and waiters.
	mu      sync.Mutex
	now     time.Time
	waiters []manualWaiter
	// changed receives (without blocking) whenever a waiter is added.
	changed chan struct{}
}

type manualWaiter struct {
	at time.Time
	ch chan time.Time
}

func newManualClock(now time.Time) *manualClock {
	return &manualClock{now: now, changed: make(chan struct{}, 1)}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, manualWaiter{at: c.now.Add(d), ch: ch})
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return ch
}

// Set moves the clock to now and fires the waiters it passed.
func (c *manualClock) Set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(now) {
			w.ch <- now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// waitWaiters blocks until n waiters are pending and returns their
// earliest deadline, failing the test after a (generous) real-time bound.
func (c *manualClock) waitWaiters(t *testing.T, n int) time.Time {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		if len(c.waiters) >= n {
			first := c.waiters[0].at
			for _, w := range c.waiters {
				if w.at.Before(first) {
					first = w.at
				}
			}
			c.mu.Unlock()
			return first
		}
		c.mu.Unlock()
		select {
		case <-c.changed:
		case <-deadline:
			t.Fatalf("the scheduler did not wait on the clock within 10s (%d waiters, want %d)", len(c.waiters), n)
		}
	}
}
