// Package rootscan reads the whole verified root once during a trial boot,
// so every block of a new slot's root is checked by dm-verity before the
// slot is committed. dm-verity checks blocks only as they are read: without
// the scan, a corrupted block in a file the first boot never opens (the
// vetting image, an iPXE binary) would let a damaged slot be blessed, and
// fail much later with the older slot already overwritten.
package rootscan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
)

// Scan is a running or finished read of a device.
type Scan struct {
	done     chan struct{}
	read     atomic.Int64
	size     int64
	name     string
	finished sync.Once
	err      error // set before done closes
}

// FindDevice returns the node under dev of the device-mapper device called
// name, looked up in the block class directory sysBlock (/sys/class/block).
func FindDevice(sysBlock, dev, name string) (string, error) {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", fmt.Errorf("listing block devices: %w", err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "dm-") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(sysBlock, e.Name(), "dm", "name"))
		if err == nil && strings.TrimSpace(string(b)) == name {
			return filepath.Join(dev, e.Name()), nil
		}
	}
	return "", fmt.Errorf("no device-mapper device %s: the root is not mounted through dm-verity", name)
}

// Start reads r (size bytes, named name in messages) to the end in the
// background until ctx ends.
func Start(ctx context.Context, r io.Reader, size int64, name string) *Scan {
	s := &Scan{done: make(chan struct{}), size: size, name: name}
	go func() {
		s.finish(s.run(ctx, r))
	}()
	return s
}

func (s *Scan) finish(err error) {
	s.finished.Do(func() {
		s.err = err
		close(s.done)
	})
}

func (s *Scan) run(ctx context.Context, r io.Reader) error {
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(buf)
		s.read.Add(int64(n))
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %s fails to read at byte %d: %v (the slot's root does not match the root hash of its boot entry: it is corrupted or was changed)",
				ErrCorrupt, s.name, s.read.Load(), err)
		}
	}
}

// ErrCorrupt marks a root that failed its read.
var ErrCorrupt = errors.New("the verified root is corrupted")

// ErrRunning is Check's answer until the scan has read everything.
var ErrRunning = errors.New("still reading the root")

// Check returns nil once the whole device read cleanly, the read's error
// if it failed, and ErrRunning (with the progress) before that: a health
// check.
func (s *Scan) Check(context.Context) error {
	select {
	case <-s.done:
		return s.err
	default:
		return fmt.Errorf("%w: %d of %d bytes checked", ErrRunning, s.read.Load(), s.size)
	}
}

// Wait blocks until the scan ends and returns its result.
func (s *Scan) Wait() error {
	<-s.done
	return s.err
}
