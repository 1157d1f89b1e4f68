package netconf

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/services/config"
)

// fakeClock fires AfterFunc callbacks when Advance passes their time.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	for _, t := range c.timers {
		if !t.stopped && !t.at.After(c.now) {
			t.stopped = true
			due = append(due, t.f)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

// fakeNet records which config is applied; configs named "broken" fail
// half-way, "nomac" fail at planning.
type fakeNet struct {
	mu      sync.Mutex
	applied []string
}

func (f *fakeNet) apply(_ context.Context, c config.Config) (Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch c.Hostname {
	case "nomac":
		return Result{}, &config.FieldError{Field: "network.interfaces[0].mac", Problem: "no link has MAC", Fix: "check"}
	case "broken":
		f.applied = append(f.applied, "broken(partial)")
		return Result{Plan: Plan{{Op: OpUp, Link: "x"}}}, errors.New("netlink says no")
	}
	f.applied = append(f.applied, c.Hostname)
	return Result{}, nil
}

func (f *fakeNet) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.applied...)
}

func named(h string) config.Config {
	c := config.Default()
	c.Hostname = h
	return c
}

func TestGuard(t *testing.T) {
	type step struct {
		do      string // start X, try X, confirm, advance D, reapply
		arg     string
		wantErr error  // errors.Is target; nil means success
		errText string // or a substring
	}
	tests := []struct {
		name  string
		steps []step
		want  []string // configs applied, in order
		// pending is whether a trial runs at the end.
		pending bool
	}{
		{"try reverts after the timeout",
			[]step{{do: "start", arg: "old"}, {do: "try", arg: "new"}, {do: "advance", arg: "59s"}, {do: "advance", arg: "1s"}},
			[]string{"old", "new", "old"}, false},
		{"confirm keeps the trial",
			[]step{{do: "start", arg: "old"}, {do: "try", arg: "new"}, {do: "confirm"}, {do: "advance", arg: "5m"}, {do: "reapply"}},
			[]string{"old", "new", "new"}, false},
		{"one trial at a time",
			[]step{{do: "start", arg: "old"}, {do: "try", arg: "a"}, {do: "try", arg: "b", wantErr: ErrTryPending}},
			[]string{"old", "a"}, true},
		{"confirm without a trial",
			[]step{{do: "start", arg: "old"}, {do: "confirm", wantErr: ErrNoTrial}},
			[]string{"old"}, false},
		{"reapply during a trial applies the trial",
			[]step{{do: "start", arg: "old"}, {do: "try", arg: "new"}, {do: "reapply"}, {do: "advance", arg: "60s"}, {do: "reapply"}},
			[]string{"old", "new", "new", "old", "old"}, false},
		{"a plan error changes nothing",
			[]step{{do: "start", arg: "old"}, {do: "try", arg: "nomac", errText: "network.interfaces[0].mac: no link has MAC"}, {do: "advance", arg: "2m"}},
			[]string{"old"}, false},
		{"a half-applied try is rolled back at once",
			[]step{{do: "start", arg: "old"}, {do: "try", arg: "broken", errText: "netlink says no"}, {do: "try", arg: "new"}},
			[]string{"old", "broken(partial)", "old", "new"}, true},
		{"invalid config is refused",
			[]step{{do: "start", arg: "old"}, {do: "try", arg: "-bad-", wantErr: config.ErrInvalid}},
			[]string{"old"}, false},
		{"a stale timer does not revert a newer trial",
			[]step{{do: "start", arg: "old"}, {do: "try", arg: "a"}, {do: "confirm"}, {do: "try", arg: "b"}, {do: "advance", arg: "30s"}, {do: "confirm"}, {do: "advance", arg: "60s"}},
			[]string{"old", "a", "b"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			n := &fakeNet{}
			g := NewGuard(n.apply, clk, nil)
			ctx := context.Background()
			for _, s := range tt.steps {
				var err error
				switch s.do {
				case "start":
					_, err = g.Start(ctx, named(s.arg))
				case "try":
					_, err = g.Try(ctx, named(s.arg), time.Minute)
					if err == nil && g.Pending() == nil {
						t.Errorf("Pending() after Try(%s) = nil", s.arg)
					}
				case "confirm":
					err = g.Confirm()
				case "reapply":
					_, err = g.Reapply(ctx)
				case "advance":
					d, _ := time.ParseDuration(s.arg)
					clk.Advance(d)
				}
				switch {
				case s.wantErr != nil:
					if !errors.Is(err, s.wantErr) {
						t.Errorf("%s(%s) = %v, want %v", s.do, s.arg, err, s.wantErr)
					}
				case s.errText != "":
					if err == nil || !strings.Contains(err.Error(), s.errText) {
						t.Errorf("%s(%s) = %v, want an error containing %q", s.do, s.arg, err, s.errText)
					}
				case err != nil:
					t.Errorf("%s(%s) = %v, want nil", s.do, s.arg, err)
				}
			}
			if diff := cmp.Diff(tt.want, n.log()); diff != "" {
				t.Errorf("applied configs (-want +got):\n%s", diff)
			}
			if got := g.Pending() != nil; got != tt.pending {
				t.Errorf("Pending() != nil = %v, want %v", got, tt.pending)
			}
		})
	}
}

func TestGuardPendingCountsDown(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	n := &fakeNet{}
	g := NewGuard(n.apply, clk, nil)
	g.Start(context.Background(), named("old"))
	if _, err := g.Try(context.Background(), named("new"), 0); err != nil {
		t.Fatal(err)
	}
	clk.Advance(20 * time.Second)
	p := g.Pending()
	if p == nil || p.RevertsIn != DefaultTryTimeout-20*time.Second {
		t.Errorf("Pending() = %+v, want RevertsIn %s", p, DefaultTryTimeout-20*time.Second)
	}
}
