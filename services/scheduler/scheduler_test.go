package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/services/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	db, err := store.Open(t.Context(), filepath.Join(t.TempDir(), store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// receive returns the next value from ch, failing after a real-time bound.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
		panic("unreachable")
	}
}

func TestSchedulerRunsAtStaggeredTimes(t *testing.T) {
	start := time.Date(2026, 12, 7, 20, 30, 0, 0, time.UTC)
	clock := newManualClock(start)
	db := openStore(t)
	s := New(Options{ID: "appliance-7", Clock: clock, Store: db, Log: testlog.New(t, slog.LevelDebug)})
	hourly, _ := ParseCron("@hourly")
	ran := make(chan time.Time)
	removed := int64(0)
	if err := s.Add(Job{Name: "retention-test", Schedule: hourly, Run: func(ctx context.Context, now time.Time) (Result, error) {
		ran <- now
		removed++
		return Result{Removed: removed, Summary: "removed some"}, nil
	}}); err != nil {
		t.Fatal(err)
	}
	offset := Offset("appliance-7", "retention-test", time.Hour)
	want, _ := NextRun(hourly, time.UTC, offset, start)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); receive(t, done, "scheduler stop") }()

	jobs, err := s.Jobs(ctx)
	if err != nil || len(jobs) != 1 || !jobs[0].Next.Equal(want) || jobs[0].Offset != offset || jobs[0].Last.ID != 0 {
		t.Fatalf("Jobs() = %+v, %v, want one job, next %s, offset %s, no run yet", jobs, err, want, offset)
	}
	for i := range 3 {
		// Just before: nothing runs, the scheduler waits again.
		clock.waitWaiters(t, 1)
		clock.Set(want.Add(-time.Second))
		clock.waitWaiters(t, 1)
		select {
		case at := <-ran:
			t.Fatalf("run %d at %s, before its time %s", i, at, want)
		default:
		}
		clock.Set(want)
		if at := receive(t, ran, "scheduled run"); !at.Equal(want) {
			t.Fatalf("run %d started at %s, want %s", i, at, want)
		}
		clock.waitWaiters(t, 1) // recorded and waiting for the next
		jobs, err := s.Jobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		last := jobs[0].Last
		if !last.Started.Equal(want) || last.StartedBy != "schedule" || last.Removed != int64(i+1) || last.Error != "" {
			t.Errorf("run %d recorded as %+v, want started %s by schedule, removed %d", i, last, want, i+1)
		}
		want = want.Add(time.Hour)
		if !jobs[0].Next.Equal(want) {
			t.Errorf("after run %d, next = %s, want %s", i, jobs[0].Next, want)
		}
	}
}

func TestSchedulerRunNow(t *testing.T) {
	clock := newManualClock(time.Date(2026, 12, 7, 20, 30, 0, 0, time.UTC))
	db := openStore(t)
	s := New(Options{ID: "a", Clock: clock, Store: db, Log: testlog.New(t, slog.LevelDebug)})
	daily, _ := ParseCron("@daily")
	release := make(chan struct{})
	entered := make(chan struct{})
	if err := s.Add(Job{Name: "slow", Schedule: daily, Run: func(ctx context.Context, now time.Time) (Result, error) {
		entered <- struct{}{}
		<-release
		return Result{}, errors.New("disk full")
	}}); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := s.RunNow(ctx, "nope", "user:admin"); !errors.Is(err, ErrUnknownJob) {
		t.Errorf("RunNow(nope) = %v, want ErrUnknownJob", err)
	}
	type result struct {
		r   store.JobRun
		err error
	}
	first := make(chan result, 1)
	go func() { r, err := s.RunNow(ctx, "slow", "user:admin"); first <- result{r, err} }()
	receive(t, entered, "job start")
	if jobs, _ := s.Jobs(ctx); !jobs[0].Running {
		t.Errorf("Jobs() while running = %+v, want Running", jobs[0])
	}
	if _, err := s.RunNow(ctx, "slow", "user:bob"); !errors.Is(err, ErrRunning) {
		t.Errorf("second RunNow while running = %v, want ErrRunning", err)
	}
	close(release)
	got := receive(t, first, "run now result")
	if got.err != nil || got.r.ID == 0 || got.r.Error != "disk full" || got.r.StartedBy != "user:admin" {
		t.Errorf("RunNow = %+v, %v, want a recorded failed run started by user:admin", got.r, got.err)
	}
	last, err := db.LastJobRuns(ctx)
	if err != nil || last["slow"].ID != got.r.ID {
		t.Errorf("LastJobRuns = %+v, %v, want run %d", last, err, got.r.ID)
	}
}

func TestAddRejects(t *testing.T) {
	s := New(Options{ID: "a"})
	daily, _ := ParseCron("@daily")
	never, _ := ParseCron("0 0 30 2 *")
	run := func(context.Context, time.Time) (Result, error) { return Result{}, nil }
	if err := s.Add(Job{Name: "ok", Schedule: daily, Run: run}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		j    Job
	}{
		{"duplicate", Job{Name: "ok", Schedule: daily, Run: run}},
		{"bad name", Job{Name: "Bad Name", Schedule: daily, Run: run}},
		{"no run", Job{Name: "norun", Schedule: daily}},
		{"window", Job{Name: "wide", Schedule: daily, Window: 48 * time.Hour, Run: run}},
		{"never", Job{Name: "never", Schedule: never, Run: run}},
	} {
		if err := s.Add(tc.j); err == nil {
			t.Errorf("Add(%s) = nil, want an error", tc.name)
		}
	}
}
