// Package stall puts idle and overall deadlines on a bundle stream, so a
// download or upload that stops moving ends the install (which then
// releases the update lock and records the slot's state) instead of holding
// it forever.
package stall

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Errors a watched transfer ends with (also its context's cause).
var (
	ErrIdle    = errors.New("the transfer stalled")
	ErrOverall = errors.New("the transfer took too long")
)

// Deadlines for one transfer; zero disables either.
type Deadlines struct {
	Idle    time.Duration // longest time without a byte
	Overall time.Duration // longest whole transfer
}

// Transfer watches one stream.
type Transfer struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	d      Deadlines
	start  time.Time
	done   chan struct{}
	once   sync.Once

	// mu guards last.
	mu   sync.Mutex
	last time.Time // when the last byte came
}

// Watch starts watching: Context is cancelled when the transfer stalls past
// d, with cause ErrIdle or ErrOverall (naming the limit). abort, if not nil,
// is called then to unblock a Read the context does not reach (a server
// request's body). Call Stop when the transfer is over.
func Watch(ctx context.Context, d Deadlines, abort func()) *Transfer {
	ctx, cancel := context.WithCancelCause(ctx)
	t := &Transfer{ctx: ctx, cancel: cancel, d: d, start: time.Now(), done: make(chan struct{})}
	t.last = t.start
	tick := d.Idle
	if tick <= 0 || (d.Overall > 0 && d.Overall < tick) {
		tick = d.Overall
	}
	if tick <= 0 {
		return t
	}
	go func() {
		tk := time.NewTicker(max(tick/8, time.Millisecond))
		defer tk.Stop()
		for {
			select {
			case <-t.done:
				return
			case <-ctx.Done():
				return
			case now := <-tk.C:
				if err := t.check(now); err != nil {
					cancel(err)
					if abort != nil {
						abort()
					}
					return
				}
			}
		}
	}()
	return t
}

// Context is cancelled when the transfer stalls.
func (t *Transfer) Context() context.Context { return t.ctx }

// Stop ends the watch.
func (t *Transfer) Stop() {
	t.once.Do(func() {
		close(t.done)
		t.cancel(nil)
	})
}

func (t *Transfer) check(now time.Time) error {
	t.mu.Lock()
	last := t.last
	t.mu.Unlock()
	switch {
	case t.d.Idle > 0 && now.Sub(last) >= t.d.Idle:
		return fmt.Errorf("%w: no data for %s", ErrIdle, t.d.Idle)
	case t.d.Overall > 0 && now.Sub(t.start) >= t.d.Overall:
		return fmt.Errorf("%w: not done after %s", ErrOverall, t.d.Overall)
	}
	return nil
}

// Reader counts r's progress; once the transfer stalled its reads fail
// with the stall's cause rather than the error a cancelled read gives.
func (t *Transfer) Reader(r io.Reader) io.Reader { return &reader{t: t, r: r} }

type reader struct {
	t *Transfer
	r io.Reader
}

func (r *reader) stalled() error {
	if c := context.Cause(r.t.ctx); errors.Is(c, ErrIdle) || errors.Is(c, ErrOverall) {
		return c
	}
	return nil
}

func (r *reader) Read(p []byte) (int, error) {
	if err := r.stalled(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.mu.Lock()
		r.t.last = time.Now()
		r.t.mu.Unlock()
	}
	if err != nil && err != io.EOF {
		if s := r.stalled(); s != nil {
			err = s
		}
	}
	return n, err
}
