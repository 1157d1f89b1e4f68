// Package oplock is the one-at-a-time lock of OTA operations that change the
// slots (install, rollback): an exclusive, non-blocking flock on a file in
// /run, so a second operation is refused at once with ErrBusy instead of
// queueing, and a crashed holder's lock goes away with its process.
package oplock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrBusy means another OTA operation holds the lock.
var ErrBusy = errors.New("another update operation is in progress")

// DefaultPath is the lock file on the appliance.
const DefaultPath = "/run/kiln/ota.lock"

// Lock is a held lock.
type Lock struct {
	f *os.File
}

// Acquire takes the lock at path for what (written into the file, for the
// busy message) or returns ErrBusy naming the holder.
func Acquire(path, what string) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the update lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			h := strings.TrimSpace(string(holder))
			if h == "" {
				h = "unknown"
			}
			return nil, fmt.Errorf("%w (%s); wait for it to finish", ErrBusy, h)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%s (pid %d)\n", what, os.Getpid())
	return &Lock{f: f}, nil
}

// Release drops the lock.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Truncate(0)
	l.f.Close()
	l.f = nil
}
