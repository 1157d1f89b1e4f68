// Package commit is what PID 1 does about OTA on every boot. Before the
// services start, Prepare tidies the ESP's entries, records a fallback from a
// generation that used up its tries, and keeps the database usable across
// versions: the first time a newer generation starts on the data partition
// the database is snapshotted, and when an older generation boots again
// (fallback or rollback) the snapshot it left is restored. After the services
// start, Commit decides a trial boot (one from a counted entry): when every
// health check passes within the deadline the entry is blessed and the slot
// recorded good; otherwise the entry is marked bad, the generation recorded
// as failed (the pull schedule never retries it), and the caller reboots into
// the older generation.
package commit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"kiln.dev/kiln/ota/bootentry"
	"kiln.dev/kiln/ota/espfs"
	"kiln.dev/kiln/ota/oplock"
	"kiln.dev/kiln/ota/slots"
	"kiln.dev/kiln/partitions"
)

// ErrFinal, wrapped by a check's error, says the check will never pass
// (a corrupted root): the trial ends at once instead of at the deadline.
var ErrFinal = errors.New("will not pass")

// Check is one health check: nil when healthy, else what is wrong.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// Options describe the running appliance.
type Options struct {
	// ESP is the mounted ESP; Running the running slot.
	ESP     espfs.FS
	Running partitions.Slot
	// State is the OTA state file; nil when /data is not mounted.
	State *slots.Store
	// Data is the database to keep across versions (zero: none).
	Data Data
	// LockPath is the OTA operations lock (install, rollback): the verdict
	// is written under it, so an operator's rollback during the checks wins.
	// Empty: no lock.
	LockPath string
	// Checks all pass for a trial boot to be committed.
	Checks []Check
	// Deadline bounds a trial boot's health checks; Poll is the pause
	// between rounds (default 2 s).
	Deadline, Poll time.Duration
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// Log gets what happened; nil discards.
	Log *slog.Logger
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o Options) log() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log.With("component", "ota")
}

// Boot is what Prepare found.
type Boot struct {
	// Trial is true when the running slot booted from a counted entry.
	Trial bool
	// Entry is the running slot's entry (ok false: it has none).
	Entry   bootentry.Entry
	EntryOK bool
	// FellBack describes the other slot's generation that used up its tries.
	FellBack *slots.Failure
	// Data says what was done to the database ("" if nothing).
	Data string
	// Problems are operator-facing problems found on the way.
	Problems []string
}

// Prepare runs before the services start.
func Prepare(o Options) (Boot, error) {
	var b Boot
	if o.ESP == nil {
		return b, errors.New("the ESP is not mounted, so OTA boot checks cannot run: this boot is not committed and updates are unavailable")
	}
	if renamed, err := slots.FoldGRUB(o.ESP); err != nil {
		b.Problems = append(b.Problems, fmt.Sprintf("folding GRUB's boot counts into the entries: %v", err))
	} else if len(renamed) > 0 {
		o.log().Info("counted the tries of a legacy BIOS boot", "entries", strings.Join(renamed, ","))
	}
	if removed, err := slots.Tidy(o.ESP); err != nil {
		b.Problems = append(b.Problems, fmt.Sprintf("tidying boot entries: %v", err))
	} else if len(removed) > 0 {
		o.log().Info("removed leftovers of an interrupted entry change", "files", strings.Join(removed, ","))
	}
	entries, problems, err := slots.Scan(o.ESP)
	if err != nil {
		return b, err
	}
	b.Problems = append(b.Problems, problems...)
	if o.State == nil {
		_, res := slots.OnBoot(slots.Record{}, o.Running, entries, o.now())
		b.Trial, b.Entry, b.EntryOK = res.Trial, res.Running, res.RunningOK
		return b, nil
	}
	now := o.now()
	var res slots.BootResult
	_, err = o.State.Update(func(r *slots.Record) error {
		*r, res = slots.OnBoot(*r, o.Running, entries, now)
		if res.RunningOK && o.Data.StateDir != "" {
			var derr error
			*r, b.Data, derr = PrepareData(*r, res.Running.Generation, o.Data, now)
			if derr != nil {
				b.Problems = append(b.Problems, derr.Error())
			}
		}
		return nil
	})
	if err != nil {
		return b, err
	}
	b.Trial, b.Entry, b.EntryOK, b.FellBack = res.Trial, res.Running, res.RunningOK, res.FellBack
	if !b.EntryOK {
		b.Problems = append(b.Problems, fmt.Sprintf("the running slot %s has no boot entry on the ESP (the ESP was changed by hand?); updates are refused until it has one", o.Running))
	}
	if b.FellBack != nil {
		o.log().Warn("the new generation did not come up; running the previous one", "generation", b.FellBack.Generation, "version", b.FellBack.Version, "reason", b.FellBack.Reason)
	}
	if b.Data != "" {
		o.log().Info("database kept across versions", "action", b.Data)
	}
	return b, nil
}

// Result is what Commit decided.
type Result struct {
	// Committed is true when the checks passed and the entry was blessed;
	// otherwise the entry was marked bad and the caller must reboot.
	Committed bool
	// Reason says which check failed last (when not committed).
	Reason string
}

// Commit runs the health checks of a trial boot of entry e until all pass
// or the deadline passes, then blesses or marks the entry bad and records
// the outcome. ctx ending early (shutdown) decides nothing.
func Commit(ctx context.Context, o Options, e bootentry.Entry) (Result, error) {
	poll := o.Poll
	if poll <= 0 {
		poll = 2 * time.Second
	}
	deadline := o.now().Add(o.Deadline)
	log := o.log().With("generation", e.Generation, "version", e.Version, "slot", e.Slot)
	log.Info("trial boot: running health checks", "deadline", o.Deadline)
	var reason string
	final := false
	for {
		reason, final = runChecks(ctx, o.Checks, poll)
		if reason == "" {
			break
		}
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		if final || !o.now().Before(deadline) {
			break
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return Result{}, ctx.Err()
		case <-t.C:
		}
	}
	if o.LockPath != "" {
		l, err := acquire(ctx, o.LockPath)
		if err != nil {
			return Result{}, err
		}
		defer l.Release()
	}
	if entries, _, err := slots.Scan(o.ESP); err == nil && !hasEntry(entries, e) {
		log.Warn("the trial entry changed during the health checks (an operator rolled back?); leaving it as it is", "entry", e.FileName())
		return Result{Committed: false}, fmt.Errorf("boot entry %s changed during the health checks (rolled back?): nothing decided", e.FileName())
	}
	now := o.now()
	if reason == "" {
		blessed, err := retry(ctx, func() (bootentry.Entry, error) { return slots.Bless(o.ESP, e) })
		if err != nil {
			return Result{}, fmt.Errorf("the health checks passed but blessing boot entry %s failed: %w (the boot counter keeps running down: fix the ESP or roll back)", e.FileName(), err)
		}
		if o.State != nil {
			if _, err := o.State.Update(func(r *slots.Record) error { *r = slots.Passed(*r, e.Slot, blessed, now); return nil }); err != nil {
				log.Warn("recording the commit", "err", err)
			}
		}
		log.Info("committed: health checks passed", "entry", blessed.FileName())
		return Result{Committed: true}, nil
	}
	if final {
		reason = "a health check cannot pass: " + reason
	} else {
		reason = fmt.Sprintf("health checks did not pass within %s: %s", o.Deadline, reason)
	}
	bad, err := retry(ctx, func() (bootentry.Entry, error) { return slots.MarkBad(o.ESP, e) })
	if o.State != nil {
		if _, uerr := o.State.Update(func(r *slots.Record) error { *r = slots.Failed(*r, e.Slot, e, reason, now); return nil }); uerr != nil {
			log.Warn("recording the failure", "err", uerr)
		}
	}
	if err != nil {
		// The counter still runs down on each reboot, so the older
		// generation boots after the remaining tries anyway.
		return Result{Reason: reason}, fmt.Errorf("%s; marking boot entry %s bad failed: %w", reason, e.FileName(), err)
	}
	log.Warn("not committed: rebooting into the previous generation", "reason", reason, "entry", bad.FileName())
	return Result{Reason: reason}, nil
}

func hasEntry(entries []bootentry.Entry, e bootentry.Entry) bool {
	for _, x := range entries {
		if x.FileName() == e.FileName() && x.Slot == e.Slot {
			return true
		}
	}
	return false
}

// acquire takes the OTA lock, waiting up to a minute for an operation that
// holds it.
func acquire(ctx context.Context, path string) (*oplock.Lock, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		l, err := oplock.Acquire(path, "boot commit")
		if err == nil || !errors.Is(err, oplock.ErrBusy) || time.Now().After(deadline) {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// runChecks runs every check (each bounded by timeout) and returns what
// failed, or "" when all passed, and whether a failure is final.
func runChecks(ctx context.Context, checks []Check, timeout time.Duration) (string, bool) {
	var failed []string
	final := false
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, max(timeout, 5*time.Second))
		err := c.Run(cctx)
		cancel()
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", c.Name, err))
			final = final || errors.Is(err, ErrFinal)
		}
	}
	return strings.Join(failed, "; "), final
}

func retry(ctx context.Context, f func() (bootentry.Entry, error)) (bootentry.Entry, error) {
	var err error
	for i := 0; i < 3; i++ {
		var e bootentry.Entry
		if e, err = f(); err == nil {
			return e, nil
		}
		select {
		case <-ctx.Done():
			return e, err
		case <-time.After(time.Second):
		}
	}
	return bootentry.Entry{}, err
}
