package scheduler

import (
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// MaxWindow is the largest stagger window: a job runs at most a day late.
const MaxWindow = 24 * time.Hour

// DefaultWindow is the stagger window of a job that sets none: the smaller
// of an hour and the spacing of the schedule's first two times of 2001
// (a year without DST surprises in UTC), so an hourly job still runs once
// an hour.
func DefaultWindow(c Cron) time.Duration {
	ref := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	a, err := c.Next(ref.Add(-time.Nanosecond), time.UTC)
	if err != nil {
		return time.Hour
	}
	b, err := c.Next(a, time.UTC)
	if err != nil {
		return time.Hour
	}
	return min(time.Hour, b.Sub(a))
}

// Offset is the job's fixed delay after each of its cron times on the
// appliance id: SHA-256("kiln/scheduler/" + job + "/" + id), its first 8
// bytes big-endian, modulo the window in whole seconds.
func Offset(id, job string, window time.Duration) time.Duration {
	secs := uint64(window / time.Second)
	if secs == 0 {
		return 0
	}
	sum := sha256.Sum256([]byte("kiln/scheduler/" + job + "/" + id))
	return time.Duration(binary.BigEndian.Uint64(sum[:8])%secs) * time.Second
}

// NextRun is the job's first staggered time strictly after now: the first
// cron time c with c + offset > now, plus offset.
func NextRun(c Cron, loc *time.Location, offset time.Duration, now time.Time) (time.Time, error) {
	at, err := c.Next(now.Add(-offset), loc)
	if err != nil {
		return time.Time{}, err
	}
	return at.Add(offset), nil
}
