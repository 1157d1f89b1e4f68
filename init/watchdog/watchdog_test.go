package watchdog

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

type countPetter struct{ n atomic.Int32 }

func (c *countPetter) Pet() error { c.n.Add(1); return nil }

func TestKeepPetsOnlyWhileHealthy(t *testing.T) {
	// healthy answers from a script: start, three healthy ticks, three
	// unhealthy ticks, one healthy tick.
	script := []bool{true, true, true, true, false, false, false, true}
	var calls atomic.Int32
	healthy := func() error {
		if script[calls.Add(1)-1] {
			return nil
		}
		return errors.New("mgmt crash-looping")
	}
	p := &countPetter{}
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Keep(ctx, p, healthy, tick, slog.New(slog.DiscardHandler)); close(done) }()
	for i := 1; i < len(script); i++ {
		tick <- time.Now()
	}
	for calls.Load() < int32(len(script)) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if got, want := p.n.Load(), int32(5); got != want {
		t.Errorf("pets = %d, want %d", got, want)
	}
}

func TestOpenAndDisarmOnAPlainFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Open(p, 30*time.Second)
	if err == nil {
		t.Error("Open(plain file) set a timeout; want an ioctl error")
	}
	if d == nil {
		t.Fatal("Open(plain file) returned no device")
	}
	if err := d.Pet(); err != nil {
		t.Errorf("Pet (write fallback) = %v", err)
	}
	if err := d.Disarm(); err != nil {
		t.Errorf("Disarm = %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != ".V" {
		t.Errorf("device got %q, want %q", b, ".V")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing"), time.Second); err == nil {
		t.Error("Open(missing) = nil error")
	}
}
