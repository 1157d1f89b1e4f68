package supervisor

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRestartTracker(t *testing.T) {
	policy := Backoff{Base: 100 * time.Millisecond, Max: time.Second, StableAfter: 10 * time.Second, CrashLoopFailures: 5, CrashLoopWindow: time.Minute}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		at    time.Duration // failure time after t0; negative means reset instead
		delay time.Duration
		loop  bool
	}
	ms := time.Millisecond
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"doubles up to max", []step{
			{0, 100 * ms, false}, {1 * time.Second, 200 * ms, false}, {2 * time.Second, 400 * ms, false}, {3 * time.Second, 800 * ms, false},
		}},
		{"crash loop at five failures in the window, then max", []step{
			{0, 100 * ms, false}, {1 * time.Second, 200 * ms, false}, {2 * time.Second, 400 * ms, false},
			{3 * time.Second, 800 * ms, false}, {4 * time.Second, time.Second, true}, {10 * time.Minute, time.Second, true},
		}},
		{"failures outside the window do not count", []step{
			{0, 100 * ms, false}, {20 * time.Second, 200 * ms, false}, {40 * time.Second, 400 * ms, false},
			{70 * time.Second, 800 * ms, false}, {90 * time.Second, time.Second, false}, {110 * time.Second, time.Second, false},
		}},
		{"reset starts over and ends the crash loop", []step{
			{0, 100 * ms, false}, {1, 200 * ms, false}, {2, 400 * ms, false}, {3, 800 * ms, false}, {4, time.Second, true},
			{-1, 0, false}, {5 * time.Second, 100 * ms, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := restartTracker{policy: policy}
			for i, s := range tc.steps {
				if s.at < 0 {
					r.reset()
					continue
				}
				d := r.failed(t0.Add(s.at))
				if got, want := (step{s.at, d, r.crashLoop}), s; got != want {
					t.Errorf("step %d: failed(t0+%s) = %s crashLoop %v, want %s crashLoop %v", i, s.at, d, r.crashLoop, s.delay, s.loop)
				}
			}
		})
	}
}

func TestBackoffDefaults(t *testing.T) {
	got := Backoff{Base: 10 * time.Millisecond}.withDefaults()
	want := DefaultBackoff()
	want.Base = 10 * time.Millisecond
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("withDefaults (-want +got):\n%s", diff)
	}
}
