package scheduler

import (
	"fmt"
	"testing"
	"time"
)

func TestOffsetSpreadsAFleet(t *testing.T) {
	const ids, buckets = 1000, 10
	window := time.Hour
	var count [buckets]int
	seen := map[time.Duration]bool{}
	for i := range ids {
		id := fmt.Sprintf("appliance-%04d", i)
		off := Offset(id, "retention-boot-events", window)
		if off < 0 || off >= window || off%time.Second != 0 {
			t.Fatalf("Offset(%s) = %s, want whole seconds in [0, %s)", id, off, window)
		}
		if again := Offset(id, "retention-boot-events", window); again != off {
			t.Fatalf("Offset(%s) = %s then %s, want the same", id, off, again)
		}
		seen[off] = true
		count[off*buckets/window]++
	}
	// Uniform: 100 per bucket; a hash puts every bucket well within ±40
	// (the ids are fixed, so this is not a matter of luck between runs).
	for b, n := range count {
		if n < 60 || n > 140 {
			t.Errorf("bucket %d of %d (minutes %d-%d) holds %d of %d appliances, want about %d", b, buckets, b*6, b*6+6, n, ids, ids/buckets)
		}
	}
	// 1,000 draws from 3,600 seconds give about 872 distinct values.
	if len(seen) < 800 {
		t.Errorf("%d appliances share only %d distinct offsets", ids, len(seen))
	}
	// Jobs of one appliance do not all run at one moment either.
	if Offset("a", "backup", window) == Offset("a", "retention-sessions", window) &&
		Offset("a", "backup", window) == Offset("a", "ota-check", window) {
		t.Errorf("three jobs of one appliance share an offset")
	}
}

func TestOffsetFormula(t *testing.T) {
	// The formula in doc.go, computed apart from Go (Python's hashlib):
	// pinned so that a change, which moves every appliance's times, is
	// deliberate.
	if got, want := Offset("kiln-test", "backup", time.Hour), 2232*time.Second; got != want {
		t.Errorf("Offset(kiln-test, backup, 1h) = %s, want %s", got, want)
	}
	if got := Offset("x", "y", 0); got != 0 {
		t.Errorf("Offset with no window = %s, want 0", got)
	}
	if got := Offset("x", "y", 999*time.Millisecond); got != 0 {
		t.Errorf("Offset with a window under a second = %s, want 0", got)
	}
}

func TestNextRun(t *testing.T) {
	hourly, _ := ParseCron("@hourly")
	daily, _ := ParseCron("@daily")
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		c      Cron
		offset time.Duration
		now    string
		want   string
	}{
		{hourly, 17 * time.Minute, "2026-12-07T20:00:00Z", "2026-12-07T20:17:00Z"},
		{hourly, 17 * time.Minute, "2026-12-07T20:17:00Z", "2026-12-07T21:17:00Z"},
		{hourly, 17 * time.Minute, "2026-12-07T20:16:59Z", "2026-12-07T20:17:00Z"},
		{daily, 50 * time.Minute, "2026-12-07T00:30:00Z", "2026-12-07T00:50:00Z"},
		{daily, 50 * time.Minute, "2026-12-07T00:51:00Z", "2026-12-08T00:50:00Z"},
		{daily, 0, "2026-12-07T00:00:00Z", "2026-12-08T00:00:00Z"},
	} {
		got, err := NextRun(tc.c, time.UTC, tc.offset, at(tc.now))
		if err != nil || !got.Equal(at(tc.want)) {
			t.Errorf("NextRun(%s, +%s, %s) = %s, %v, want %s", tc.c, tc.offset, tc.now, got.Format(time.RFC3339), err, tc.want)
		}
	}
}

func TestDefaultWindow(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want time.Duration
	}{
		{"@hourly", time.Hour},
		{"@daily", time.Hour},
		{"*/10 * * * *", 10 * time.Minute},
		{"* * * * *", time.Minute},
	} {
		c, err := ParseCron(tc.expr)
		if err != nil {
			t.Fatal(err)
		}
		if got := DefaultWindow(c); got != tc.want {
			t.Errorf("DefaultWindow(%s) = %s, want %s", tc.expr, got, tc.want)
		}
	}
}
