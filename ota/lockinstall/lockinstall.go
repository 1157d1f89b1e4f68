// Package lockinstall is a test installer that behaves like
// install.Installer where the stall tests look: it holds the update lock
// (oplock) while it reads the whole bundle and fails with the read's error.
package lockinstall

import (
	"context"
	"io"

	"kiln.dev/kiln/ota/install"
	"kiln.dev/kiln/ota/oplock"
)

// Installer takes the lock at Lock.
type Installer struct{ Lock string }

// Install reads r to its end under the lock.
func (l Installer) Install(_ context.Context, r io.Reader, _ install.Request) (install.Result, error) {
	lk, err := oplock.Acquire(l.Lock, "test install")
	if err != nil {
		return install.Result{}, err
	}
	defer lk.Release()
	_, err = io.Copy(io.Discard, r)
	return install.Result{}, err
}
