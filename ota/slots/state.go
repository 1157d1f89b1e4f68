package slots

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/internal/atomicfile"
	"kiln.dev/kiln/partitions"
)

// Phase is what the OTA code last did with a slot.
type Phase string

const (
	PhaseInstalling Phase = "installing" // install under way (or interrupted)
	PhaseInstalled  Phase = "installed"  // entry written, not booted yet
	PhaseTrying     Phase = "trying"     // booted, health checks pending
	PhaseGood       Phase = "good"       // committed
	PhaseBad        Phase = "bad"        // failed, or rolled back from
)

// SlotRecord is what the state file remembers about one slot.
type SlotRecord struct {
	Generation int       `json:"generation,omitempty"`
	Version    string    `json:"version,omitempty"`
	Phase      Phase     `json:"phase,omitempty"`
	LastBoot   string    `json:"last_boot,omitempty"`
	At         time.Time `json:"at,omitzero"`
}

// Failure is a generation that failed (or was rolled back from): the pull
// schedule never installs it again on its own.
type Failure struct {
	Generation int       `json:"generation"`
	Version    string    `json:"version"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
}

// Snapshot is the copy of the database taken before a newer generation first
// started on the data partition; a rollback to Generation restores it.
type Snapshot struct {
	Generation int       `json:"generation"`
	Dir        string    `json:"dir"`
	At         time.Time `json:"at"`
}

// Record is the OTA state file's content.
type Record struct {
	Slots  map[partitions.Slot]SlotRecord `json:"slots,omitempty"`
	Failed []Failure                      `json:"failed,omitempty"`
	// DataGeneration is the newest generation whose services have run on the
	// data partition (its database schema).
	DataGeneration int       `json:"data_generation,omitempty"`
	Snapshot       *Snapshot `json:"snapshot,omitempty"`
}

// Clone returns a deep copy, so the state machine's functions never change
// the record they were given.
func (r Record) Clone() Record {
	out := r
	if r.Slots != nil {
		out.Slots = make(map[partitions.Slot]SlotRecord, len(r.Slots))
		for k, v := range r.Slots {
			out.Slots[k] = v
		}
	}
	out.Failed = append([]Failure(nil), r.Failed...)
	if r.Snapshot != nil {
		snap := *r.Snapshot
		out.Snapshot = &snap
	}
	return out
}

// Slot returns the record of slot s (zero if none).
func (r Record) Slot(s partitions.Slot) SlotRecord { return r.Slots[s] }

// SetSlot replaces the record of slot s.
func (r *Record) SetSlot(s partitions.Slot, sr SlotRecord) {
	if r.Slots == nil {
		r.Slots = map[partitions.Slot]SlotRecord{}
	}
	r.Slots[s] = sr
}

// FailedGeneration returns the failure recorded for gen, if any.
func (r Record) FailedGeneration(gen int) (Failure, bool) {
	for _, f := range r.Failed {
		if f.Generation == gen {
			return f, true
		}
	}
	return Failure{}, false
}

// AddFailure records a failed generation once (the first reason stays).
func (r *Record) AddFailure(f Failure) {
	if _, ok := r.FailedGeneration(f.Generation); ok {
		return
	}
	r.Failed = append(r.Failed, f)
	const keep = 20
	if len(r.Failed) > keep {
		r.Failed = r.Failed[len(r.Failed)-keep:]
	}
}

// Store is the state file, read and written under an advisory lock so PID 1
// (commit) and the management service (install, rollback) can share it.
type Store struct {
	// Path is the state file, e.g. /data/state/ota/state.json.
	Path string
}

// DefaultPath returns the state file under a state dir.
func DefaultPath(stateDir string) string { return filepath.Join(stateDir, "ota", "state.json") }

// Load reads the record; a missing file is an empty record.
func (s *Store) Load() (Record, error) {
	var r Record
	err := s.locked(func() error {
		var err error
		r, err = s.read()
		return err
	})
	return r, err
}

// Update applies fn to the record and writes it back durably (temp file,
// fsync, rename, fsync of the directory). An error from fn writes nothing.
func (s *Store) Update(fn func(*Record) error) (Record, error) {
	var r Record
	err := s.locked(func() error {
		var err error
		if r, err = s.read(); err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
		return s.write(r)
	})
	return r, err
}

func (s *Store) locked(fn func() error) error {
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(s.Path), err)
	}
	lf, err := os.OpenFile(s.Path+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("opening the OTA state lock: %w", err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("locking the OTA state: %w", err)
	}
	return fn()
}

func (s *Store) read() (Record, error) {
	var r Record
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("reading the OTA state: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("the OTA state file %s is corrupt (%v): move it away to start over; slot states are then derived from the boot entries alone", s.Path, err)
	}
	return r, nil
}

func (s *Store) write(r Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the OTA state: %w", err)
	}
	return atomicfile.WriteFile(s.Path, append(b, '\n'), 0o644)
}
