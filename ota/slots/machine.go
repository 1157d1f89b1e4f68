package slots

import (
	"fmt"
	"time"

	"kiln.dev/kiln/ota/bootentry"
	"kiln.dev/kiln/partitions"
)

// State is a slot's derived state (see the package doc).
type State string

const (
	StateEmpty      State = "empty"
	StateIncomplete State = "incomplete"
	StateInstalled  State = "installed"
	StateTrying     State = "trying"
	StateGood       State = "good"
	StateBad        State = "bad"
)

// Slot is one slot as status reports show it.
type Slot struct {
	Name    partitions.Slot `json:"slot"`
	Running bool            `json:"running"`
	// Next is true for the slot systemd-boot boots next.
	Next       bool   `json:"next"`
	State      State  `json:"state"`
	Entry      string `json:"entry,omitempty"`
	Version    string `json:"version,omitempty"`
	Generation int    `json:"generation,omitempty"`
	Counting   bool   `json:"counting,omitempty"`
	TriesLeft  int    `json:"tries_left,omitempty"`
	TriesDone  int    `json:"tries_done,omitempty"`
	LastBoot   string `json:"last_boot,omitempty"`
}

// AllSlots lists the slots in order.
var AllSlots = []partitions.Slot{partitions.SlotA, partitions.SlotB}

// Derive computes both slots' states from the ESP's entries and the record.
func Derive(running partitions.Slot, entries []bootentry.Entry, r Record) []Slot {
	next, hasNext := bootentry.Pick(entries)
	var out []Slot
	for _, s := range AllSlots {
		sr := r.Slot(s)
		sl := Slot{Name: s, Running: s == running, Next: hasNext && next.Slot == s}
		e, ok := OfSlot(entries, s)
		switch {
		case !ok && sr.Phase == PhaseInstalling:
			sl.State, sl.Version, sl.Generation = StateIncomplete, sr.Version, sr.Generation
		case !ok:
			sl.State = StateEmpty
		default:
			sl.Entry, sl.Version, sl.Generation = e.FileName(), e.Version, e.Generation
			if e.Counter != nil {
				sl.Counting, sl.TriesLeft, sl.TriesDone = true, e.Counter.Left, e.Counter.Done
			}
			_, failed := r.FailedGeneration(e.Generation)
			switch {
			case e.Bad(), e.Counter != nil && failed:
				sl.State = StateBad
			case e.Counter != nil && s == running:
				sl.State = StateTrying
			case e.Counter != nil:
				sl.State = StateInstalled
			default:
				sl.State = StateGood
			}
		}
		if sr.Generation == sl.Generation {
			sl.LastBoot = sr.LastBoot
		}
		out = append(out, sl)
	}
	return out
}

// BootResult is what OnBoot found.
type BootResult struct {
	// Trial is true when the running slot booted from a counted entry: the
	// health checks decide whether it is committed.
	Trial bool
	// Running is the running slot's entry (ok false when it has none).
	Running   bootentry.Entry
	RunningOK bool
	// FellBack is set when the other slot's new generation used up its tries
	// and systemd-boot fell back to the running slot.
	FellBack *Failure
}

// OnBoot updates the record for a boot of slot running with the ESP's
// entries: it notices a fallback from the other slot and marks a trial.
func OnBoot(r Record, running partitions.Slot, entries []bootentry.Entry, now time.Time) (Record, BootResult) {
	r = r.Clone()
	var res BootResult
	other := running.Other()
	if oe, ok := OfSlot(entries, other); ok {
		or := r.Slot(other)
		if oe.Bad() && oe.Generation == or.Generation && (or.Phase == PhaseInstalled || or.Phase == PhaseTrying) {
			f := Failure{Generation: oe.Generation, Version: oe.Version, At: now,
				Reason: fmt.Sprintf("did not come up after %d tries; systemd-boot fell back to slot %s", oe.Counter.Done, running)}
			or.Phase, or.LastBoot, or.At = PhaseBad, "failed: "+f.Reason, now
			r.SetSlot(other, or)
			r.AddFailure(f)
			res.FellBack = &f
		}
	}
	e, ok := OfSlot(entries, running)
	res.Running, res.RunningOK = e, ok
	if !ok {
		return r, res
	}
	rr := r.Slot(running)
	if rr.Generation != e.Generation {
		rr = SlotRecord{Generation: e.Generation, Version: e.Version}
	}
	rr.Version = e.Version
	if e.Counter != nil {
		res.Trial = true
		rr.Phase, rr.At = PhaseTrying, now
		rr.LastBoot = fmt.Sprintf("booting: try %d, health checks pending", e.Counter.Done)
	} else if rr.Phase != PhaseGood {
		rr.Phase, rr.At = PhaseGood, now
		if rr.LastBoot == "" {
			rr.LastBoot = "good (committed entry)"
		}
	}
	r.SetSlot(running, rr)
	return r, res
}

// Passed records that slot s passed its health checks (committed).
func Passed(r Record, s partitions.Slot, e bootentry.Entry, now time.Time) Record {
	r = r.Clone()
	r.SetSlot(s, SlotRecord{Generation: e.Generation, Version: e.Version, Phase: PhaseGood, At: now,
		LastBoot: "good: health checks passed " + now.UTC().Format(time.RFC3339)})
	return r
}

// Failed records that slot s failed its health checks.
func Failed(r Record, s partitions.Slot, e bootentry.Entry, reason string, now time.Time) Record {
	r = r.Clone()
	r.SetSlot(s, SlotRecord{Generation: e.Generation, Version: e.Version, Phase: PhaseBad, At: now, LastBoot: "failed: " + reason})
	r.AddFailure(Failure{Generation: e.Generation, Version: e.Version, Reason: reason, At: now})
	return r
}

// Installing records that an install of version/gen into s started.
func Installing(r Record, s partitions.Slot, version string, gen int, now time.Time) Record {
	r = r.Clone()
	r.SetSlot(s, SlotRecord{Generation: gen, Version: version, Phase: PhaseInstalling, At: now})
	return r
}

// Installed records that slot s's entry was written.
func Installed(r Record, s partitions.Slot, version string, gen int, tries int, now time.Time) Record {
	r = r.Clone()
	r.SetSlot(s, SlotRecord{Generation: gen, Version: version, Phase: PhaseInstalled, At: now,
		LastBoot: fmt.Sprintf("not booted yet (%d tries)", tries)})
	return r
}

// RolledBack records an operator's rollback away from slot from's entry e.
func RolledBack(r Record, from partitions.Slot, e bootentry.Entry, now time.Time) Record {
	r = r.Clone()
	reason := "rolled back by an operator " + now.UTC().Format(time.RFC3339)
	sr := r.Slot(from)
	if sr.Generation != e.Generation {
		sr = SlotRecord{Generation: e.Generation, Version: e.Version}
	}
	sr.Phase, sr.At, sr.LastBoot = PhaseBad, now, reason
	r.SetSlot(from, sr)
	r.AddFailure(Failure{Generation: e.Generation, Version: e.Version, Reason: reason, At: now})
	return r
}
