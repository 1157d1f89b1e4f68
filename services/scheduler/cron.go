package scheduler

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrNever: a schedule names no time that exists (such as 30 February).
var ErrNever = errors.New("the schedule never fires")

// Cron is a parsed 5-field cron expression.
type Cron struct {
	expr                     string
	minute, hour, dom, month uint64 // bit i set: value i matches
	dow                      uint64
	domStar, dowStar         bool // the field was * (or */1): see matchDay
}

// field bounds and names.
type fieldSpec struct {
	name     string
	min, max int
	names    []string // names[i] is value min+i
}

var fields = [5]fieldSpec{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
	{name: "day of week", min: 0, max: 7, names: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
}

var macros = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// ParseCron parses a 5-field cron expression or an @macro.
func ParseCron(expr string) (Cron, error) {
	src := strings.TrimSpace(expr)
	if m, ok := macros[strings.ToLower(src)]; ok {
		src = m
	} else if strings.HasPrefix(src, "@") {
		return Cron{}, fmt.Errorf("%q: unknown macro (use @hourly, @daily, @weekly, @monthly or @yearly, or 5 fields)", expr)
	}
	parts := strings.Fields(src)
	if len(parts) != 5 {
		return Cron{}, fmt.Errorf("%q: want 5 fields (minute hour day-of-month month day-of-week), got %d", expr, len(parts))
	}
	c := Cron{expr: strings.TrimSpace(expr)}
	dst := [5]*uint64{&c.minute, &c.hour, &c.dom, &c.month, &c.dow}
	for i, p := range parts {
		bits, star, err := parseField(p, fields[i])
		if err != nil {
			return Cron{}, fmt.Errorf("%q: %s field %q: %w", expr, fields[i].name, p, err)
		}
		*dst[i] = bits
		switch i {
		case 2:
			c.domStar = star
		case 4:
			c.dowStar = star
		}
	}
	if c.dow&(1<<7) != 0 { // 7 is Sunday too
		c.dow = c.dow&^(1<<7) | 1
	}
	return c, nil
}

// String returns the expression as written.
func (c Cron) String() string { return c.expr }

// parseField parses a comma-separated list of *, N, N-M, each optionally
// /step; star reports whether the whole field was * or */1.
func parseField(s string, f fieldSpec) (bits uint64, star bool, err error) {
	for item := range strings.SplitSeq(s, ",") {
		rng, stepStr, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			step, err = strconv.Atoi(stepStr)
			if err != nil || step < 1 || step > f.max {
				return 0, false, fmt.Errorf("step %q: want a number from 1 to %d", stepStr, f.max)
			}
		}
		lo, hi := f.min, f.max
		switch {
		case rng == "*":
			if f.max == 7 {
				hi = 6 // * in day of week: Sunday once
			}
			if step == 1 && s == item {
				star = true
			}
		case rng == "":
			return 0, false, errors.New("empty item (check for a doubled or trailing comma)")
		default:
			a, b, isRange := strings.Cut(rng, "-")
			if lo, err = value(a, f); err != nil {
				return 0, false, err
			}
			hi = lo
			if isRange {
				if hi, err = value(b, f); err != nil {
					return 0, false, err
				}
				if hi < lo {
					return 0, false, fmt.Errorf("range %s: the start is after the end", rng)
				}
			} else if hasStep {
				hi = f.max // N/step: from N to the end, as Vixie cron
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << v
		}
	}
	return bits, star, nil
}

func value(s string, f fieldSpec) (int, error) {
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		if f.names != nil {
			return 0, fmt.Errorf("%q: want a number from %d to %d or a name (%s…)", s, f.min, f.max, f.names[0])
		}
		return 0, fmt.Errorf("%q: want a number from %d to %d", s, f.min, f.max)
	}
	if v < f.min || v > f.max {
		return 0, fmt.Errorf("%d: out of range %d-%d", v, f.min, f.max)
	}
	return v, nil
}

// matchDay applies cron's day rule: when both day of month and day of week
// are restricted, a day matching either matches (Vixie cron, POSIX).
func (c Cron) matchDay(y int, m time.Month, d int) bool {
	wd := time.Date(y, m, d, 12, 0, 0, 0, time.UTC).Weekday()
	domOK := c.dom&(1<<d) != 0
	dowOK := c.dow&(1<<int(wd)) != 0
	switch {
	case c.domStar && c.dowStar:
		return true
	case c.domStar:
		return dowOK
	case c.dowStar:
		return domOK
	default:
		return domOK || dowOK
	}
}

// searchYears bounds Next's search: every valid expression fires within
// 8 years (29 February on a given weekday fits in 28, but that needs both
// fields restricted, which ORs them).
const searchYears = 8

// Next returns the first time strictly after t at which c fires, its
// fields read as wall-clock times in loc; ErrNever when there is none.
// A wall-clock time skipped by a DST change fires at the end of the gap;
// one repeated fires at its first occurrence.
func (c Cron) Next(t time.Time, loc *time.Location) (time.Time, error) {
	lt := t.In(loc)
	y, mo, d := lt.Date()
	// Start at the local midnight of t's day; the first day compares
	// times, later ones start from 00:00.
	end := y + searchYears
	for day := time.Date(y, mo, d, 12, 0, 0, 0, time.UTC); day.Year() <= end; day = day.AddDate(0, 0, 1) {
		dy, dm, dd := day.Date()
		if c.month&(1<<int(dm)) == 0 {
			// Jump to the first day of the next month.
			day = time.Date(dy, dm+1, 1, 12, 0, 0, 0, time.UTC).AddDate(0, 0, -1)
			continue
		}
		if !c.matchDay(dy, dm, dd) {
			continue
		}
		for h := 0; h < 24; h++ {
			if c.hour&(1<<h) == 0 {
				continue
			}
			for mi := 0; mi < 60; mi++ {
				if c.minute&(1<<mi) == 0 {
					continue
				}
				if at := wallTime(dy, dm, dd, h, mi, loc); at.After(t) {
					return at, nil
				}
			}
		}
	}
	return time.Time{}, fmt.Errorf("%q: %w (check the day of month against the month)", c.expr, ErrNever)
}

// wallTime is the instant the wall clock in loc reads y-m-d h:mi: for a
// time in a spring-forward gap, the end of the gap; for one that occurs
// twice, the first occurrence.
func wallTime(y int, m time.Month, d, h, mi int, loc *time.Location) time.Time {
	at := time.Date(y, m, d, h, mi, 0, 0, loc)
	if at.Hour() != h || at.Minute() != mi || at.Day() != d {
		// Skipped: time.Date normalized across the gap, to either side of it
		// (which one depends on the zone data). The gap ends where the
		// later zone begins.
		start, end := at.ZoneBounds()
		ay, am, ad := at.Date()
		if time.Date(ay, am, ad, at.Hour(), at.Minute(), 0, 0, time.UTC).After(time.Date(y, m, d, h, mi, 0, 0, time.UTC)) {
			return start
		}
		if !end.IsZero() {
			return end
		}
		return at
	}
	// Repeated: an earlier instant with the same wall clock exists when the
	// previous zone's offset was larger.
	if start, _ := at.ZoneBounds(); !start.IsZero() {
		_, before := start.Add(-time.Nanosecond).Zone()
		_, now := at.Zone()
		if diff := time.Duration(before-now) * time.Second; diff > 0 {
			if early := at.Add(-diff); early.Before(start) && early.Hour() == h && early.Minute() == mi {
				return early
			}
		}
	}
	return at
}
