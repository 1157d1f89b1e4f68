package slots

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"kiln.dev/kiln/ota/bootentry"
	"kiln.dev/kiln/ota/espfs"
	"kiln.dev/kiln/ota/oplock"
	"kiln.dev/kiln/partitions"
)

// Controller reads and changes the slots of a running appliance. It is the
// recovery console's SlotController and serves the update status of the API
// and CLI.
type Controller struct {
	// ESP is the mounted EFI system partition.
	ESP espfs.FS
	// Running is the running slot (kiln.slot= on the kernel command line).
	Running partitions.Slot
	// State is the OTA state file; nil when /data is not mounted.
	State *Store
	// LockPath is the one-at-a-time lock; oplock.DefaultPath if empty.
	LockPath string
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Log records rollbacks; nil discards.
	Log *slog.Logger
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Controller) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log.With("component", "ota")
}

func (c *Controller) record() (Record, error) {
	if c.State == nil {
		return Record{}, nil
	}
	return c.State.Load()
}

// Status is both slots and the failed generations.
type Status struct {
	Running  partitions.Slot `json:"running"`
	Slots    []Slot          `json:"slots"`
	Failed   []Failure       `json:"failed,omitempty"`
	Problems []string        `json:"problems,omitempty"`
}

// Status reads the ESP and the state file.
func (c *Controller) Status(context.Context) (Status, error) {
	if c.ESP == nil {
		return Status{}, errors.New("the ESP is not mounted at /boot/efi, so the boot entries cannot be read")
	}
	entries, problems, err := Scan(c.ESP)
	if err != nil {
		return Status{}, err
	}
	r, err := c.record()
	if err != nil {
		problems = append(problems, err.Error())
	}
	return Status{Running: c.Running, Slots: Derive(c.Running, entries, r), Failed: r.Failed, Problems: problems}, nil
}

// Slots lists both slots for the recovery console (init/partitions.SlotEntryController).
func (c *Controller) Slots(ctx context.Context) ([]partitions.SlotEntry, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	var out []partitions.SlotEntry
	for _, s := range st.Slots {
		out = append(out, partitions.SlotEntry{
			Name: s.Name, Entry: s.Entry, Version: s.Version,
			Counting: s.Counting, TriesLeft: s.TriesLeft, TriesDone: s.TriesDone,
		})
	}
	return out, nil
}

// ErrRollback marks a rollback that was refused; the message says why.
var ErrRollback = errors.New("cannot roll back")

// RollBack makes slot to the one that boots next, without rebooting: every
// entry of the other slot that would win is marked bad (its generation is
// recorded as rolled back, so the pull schedule does not install it again).
// A slot without an entry, or whose entry already failed, is refused. The
// data partition's database is restored from the snapshot taken before the
// newer generation first ran when the older one boots (see ota/commit).
func (c *Controller) RollBack(_ context.Context, to partitions.Slot) error {
	if _, err := partitions.ParseSlot(string(to)); err != nil {
		return fmt.Errorf("%w: %v", ErrRollback, err)
	}
	if c.ESP == nil {
		return fmt.Errorf("%w: the ESP is not mounted at /boot/efi", ErrRollback)
	}
	lockPath := c.LockPath
	if lockPath == "" {
		lockPath = oplock.DefaultPath
	}
	l, err := oplock.Acquire(lockPath, "rollback to slot "+string(to))
	if err != nil {
		return err
	}
	defer l.Release()

	entries, _, err := Scan(c.ESP)
	if err != nil {
		return err
	}
	te, ok := OfSlot(entries, to)
	if !ok {
		return fmt.Errorf("%w: slot %s has no boot entry (nothing complete is installed there)", ErrRollback, to)
	}
	if te.Bad() {
		return fmt.Errorf("%w: slot %s holds generation %d (%s), whose tries are used up: it failed to boot; install a bundle instead", ErrRollback, to, te.Generation, te.Version)
	}
	r, _ := c.record()
	if f, failed := r.FailedGeneration(te.Generation); failed && te.Counter != nil {
		return fmt.Errorf("%w: slot %s holds generation %d (%s), which failed: %s", ErrRollback, to, te.Generation, te.Version, f.Reason)
	}
	if next, _ := bootentry.Pick(entries); next.Slot == to {
		return nil // already boots next
	}
	from := to.Other()
	var marked []bootentry.Entry
	for _, e := range entries {
		if e.Slot != from || e.Bad() {
			continue
		}
		bad, err := MarkBad(c.ESP, e)
		if err != nil {
			return fmt.Errorf("marking slot %s's entry %s bad: %w", from, e.FileName(), err)
		}
		marked = append(marked, bad)
	}
	after, _, err := Scan(c.ESP)
	if err != nil {
		return err
	}
	if next, ok := bootentry.Pick(after); !ok || next.Slot != to {
		return fmt.Errorf("%w: after marking slot %s's entries bad, systemd-boot would still boot %s", ErrRollback, from, next.FileName())
	}
	c.log().Warn("rolled back: the other slot boots next", "to", to, "to_version", te.Version, "to_generation", te.Generation, "marked_bad", len(marked))
	if c.State != nil && len(marked) > 0 {
		now := c.now()
		if _, err := c.State.Update(func(r *Record) error {
			*r = RolledBack(*r, from, marked[0], now)
			return nil
		}); err != nil {
			return fmt.Errorf("slot %s boots next, but recording the rollback failed: %w", to, err)
		}
	}
	return nil
}
