package scheduler

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Skipf("no zone data for %s: %v", name, err)
	}
	return loc
}

func TestCronNext(t *testing.T) {
	berlin := mustLoad(t, "Europe/Berlin")
	ny := mustLoad(t, "America/New_York")
	utc := time.UTC
	at := func(loc *time.Location, s string) time.Time {
		t.Helper()
		v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		expr  string
		loc   *time.Location
		after time.Time
		want  []string // successive times, RFC 3339
	}{
		{"@hourly", utc, at(utc, "2026-12-07 20:30"), []string{"2026-12-07T21:00:00Z", "2026-12-07T22:00:00Z"}},
		{"@daily", utc, at(utc, "2026-12-31 23:59"), []string{"2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z"}},
		{"@weekly", utc, at(utc, "2026-12-07 00:00"), []string{"2026-12-13T00:00:00Z"}}, // a Monday → Sunday
		{"@monthly", utc, at(utc, "2026-12-07 00:00"), []string{"2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z"}},
		{"@yearly", utc, at(utc, "2026-12-07 00:00"), []string{"2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"}},
		// Exactly on a time: strictly after.
		{"30 4 * * *", utc, at(utc, "2026-12-07 04:30"), []string{"2026-12-08T04:30:00Z"}},
		{"*/15 * * * *", utc, at(utc, "2026-12-07 04:50"), []string{"2026-12-07T05:00:00Z", "2026-12-07T05:15:00Z"}},
		{"5-7,10 1 * * *", utc, at(utc, "2026-12-07 00:00"), []string{"2026-12-07T01:05:00Z", "2026-12-07T01:06:00Z", "2026-12-07T01:07:00Z", "2026-12-07T01:10:00Z"}},
		{"10/20 * * * *", utc, at(utc, "2026-12-07 00:00"), []string{"2026-12-07T00:10:00Z", "2026-12-07T00:30:00Z", "2026-12-07T00:50:00Z", "2026-12-07T01:10:00Z"}},
		{"0 3 * jan-feb mon", utc, at(utc, "2026-12-07 00:00"), []string{"2027-01-04T03:00:00Z", "2027-01-11T03:00:00Z"}},
		{"0 0 * * 7", utc, at(utc, "2026-12-07 00:00"), []string{"2026-12-13T00:00:00Z"}}, // 7 is Sunday
		// Day of month and day of week both restricted: either matches.
		{"0 0 13 * fri", utc, at(utc, "2026-12-07 00:00"), []string{"2026-12-11T00:00:00Z", "2026-12-13T00:00:00Z", "2026-12-18T00:00:00Z"}},
		{"0 0 29 2 *", utc, at(utc, "2026-03-01 00:00"), []string{"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"}},
		{"0 0 31 * *", utc, at(utc, "2027-01-31 00:00"), []string{"2027-03-31T00:00:00Z"}},
		// Zones: fields are wall-clock times there.
		{"0 2 * * *", berlin, at(utc, "2026-12-07 00:00"), []string{"2026-12-07T02:00:00+01:00", "2026-12-08T02:00:00+01:00"}},
		// Spring forward (02:00 → 03:00): 02:30 does not exist; it runs at
		// 03:00, once, and the next day at 02:30 again.
		{"30 2 * * *", berlin, at(berlin, "2026-03-28 12:00"), []string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"}},
		{"30 2 * * *", ny, at(ny, "2026-03-07 12:00"), []string{"2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"}},
		{"*/20 2 * * *", berlin, at(berlin, "2026-03-28 12:00"), []string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"}},
		// Fall back (03:00 → 02:00 in Berlin, 02:00 → 01:00 in New York):
		// the repeated time runs once, the first time.
		{"30 2 * * *", berlin, at(berlin, "2026-10-24 12:00"), []string{"2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"}},
		{"30 1 * * *", ny, at(ny, "2026-10-31 12:00"), []string{"2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"}},
		// Hourly across fall back in Berlin: the repeated 02:00 runs once, so
		// 02:00 CEST and 03:00 CET are two hours apart.
		{"0 * * * *", berlin, at(berlin, "2026-10-25 01:30"), []string{"2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00"}},
	} {
		t.Run(tc.expr+"/"+tc.loc.String(), func(t *testing.T) {
			c, err := ParseCron(tc.expr)
			if err != nil {
				t.Fatalf("ParseCron(%q) = %v", tc.expr, err)
			}
			from := tc.after
			for i, w := range tc.want {
				got, err := c.Next(from, tc.loc)
				if err != nil {
					t.Fatalf("Next #%d after %s = %v", i, from, err)
				}
				if g := got.In(tc.loc).Format(time.RFC3339); g != w {
					t.Fatalf("Next #%d(%q, after %s) = %s, want %s", i, tc.expr, from.In(tc.loc).Format(time.RFC3339), g, w)
				}
				from = got
			}
		})
	}
}

func TestCronNever(t *testing.T) {
	c, err := ParseCron("0 0 30 2 *")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.UTC); !errors.Is(err, ErrNever) {
		t.Errorf("Next(30 February) = %v, %v, want ErrNever", got, err)
	}
}

func TestParseCronErrors(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{"", "want 5 fields"},
		{"* * * *", "want 5 fields"},
		{"* * * * * *", "want 5 fields"},
		{"@fortnightly", "unknown macro"},
		{"60 * * * *", "minute field"},
		{"* 24 * * *", "hour field"},
		{"* * 0 * *", "day of month field"},
		{"* * * 13 *", "month field"},
		{"* * * * 8", "day of week field"},
		{"* * * foo *", "or a name"},
		{"*/0 * * * *", "step"},
		{"5-1 * * * *", "start is after the end"},
		{"1,,2 * * * *", "empty item"},
		{"x * * * *", "want a number"},
	} {
		if _, err := ParseCron(tc.expr); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseCron(%q) = %v, want an error containing %q", tc.expr, err, tc.want)
		}
	}
}

func FuzzParseCron(f *testing.F) {
	for _, s := range []string{"@daily", "*/5 1-3 * jan mon-fri", "0 0 29 2 *", "1,2,3 * * * 7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCron(s)
		if err != nil {
			return
		}
		from := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
		if got, err := c.Next(from, time.UTC); err == nil && !got.After(from) {
			t.Errorf("Next(%q) = %s, not after %s", s, got, from)
		}
	})
}
