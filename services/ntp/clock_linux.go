package ntp

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// KernelClock adjusts the system clock through adjtimex(2).
type KernelClock struct{}

// Adjust steps with ADJ_SETOFFSET (the kernel adds the offset atomically,
// so no time passes between reading and setting the clock) or slews with
// ADJ_OFFSET_SINGLESHOT (adjtime(3): the kernel runs the clock 500 ppm fast
// or slow until the offset is made up, 128 ms in about four minutes; a new
// slew replaces what is left of the previous one). It then records maxErr
// and clears STA_UNSYNC, so the kernel counts its clock synchronized and
// copies it to the RTC every 11 minutes: the next boot starts close.
func (KernelClock) Adjust(offset time.Duration, step bool, maxErr time.Duration) error {
	if step {
		// Cancel a slew still running; it was measured against the old time.
		if _, err := unix.Adjtimex(&unix.Timex{Modes: unix.ADJ_OFFSET_SINGLESHOT}); err != nil {
			return fmt.Errorf("adjtimex (cancel slew): %w", err)
		}
		sec, ns := offset/time.Second, offset%time.Second
		if ns < 0 {
			sec, ns = sec-1, ns+time.Second
		}
		tx := unix.Timex{Modes: unix.ADJ_SETOFFSET | unix.ADJ_NANO, Time: unix.Timeval{Sec: int64(sec), Usec: int64(ns)}}
		if _, err := unix.Adjtimex(&tx); err != nil {
			return fmt.Errorf("adjtimex (step): %w", err)
		}
	} else if _, err := unix.Adjtimex(&unix.Timex{Modes: unix.ADJ_OFFSET_SINGLESHOT, Offset: offset.Microseconds()}); err != nil {
		return fmt.Errorf("adjtimex (slew): %w", err)
	}
	us := max(maxErr.Microseconds(), 1)
	tx := unix.Timex{Modes: unix.ADJ_STATUS | unix.ADJ_MAXERROR | unix.ADJ_ESTERROR, Maxerror: us, Esterror: us}
	if _, err := unix.Adjtimex(&tx); err != nil {
		return fmt.Errorf("adjtimex (status): %w", err)
	}
	return nil
}
