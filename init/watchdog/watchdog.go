// Package watchdog drives the hardware watchdog (/dev/watchdog): it sets the
// timeout, pets the device only while the system reports itself healthy, and
// disarms it with the magic close on an orderly shutdown. If PID 1 hangs or a
// service stays in a crash loop, the petting stops and the hardware resets
// the machine.
package watchdog

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Device is an open watchdog.
type Device struct {
	f *os.File
}

// Open opens the watchdog device and sets its timeout (rounded to seconds).
// Opening arms the watchdog.
func Open(path string, timeout time.Duration) (*Device, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening watchdog: %w", err)
	}
	d := &Device{f: f}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.WDIOC_SETTIMEOUT, int(timeout/time.Second)); err != nil {
		// Keep the driver's default timeout; petting still works.
		return d, fmt.Errorf("setting watchdog timeout to %s (the device keeps its default): %w", timeout, err)
	}
	return d, nil
}

// Pet resets the watchdog's countdown.
func (d *Device) Pet() error {
	if err := unix.IoctlWatchdogKeepalive(int(d.f.Fd())); err != nil {
		// Some drivers only implement the write interface.
		if _, werr := d.f.Write([]byte{'.'}); werr != nil {
			return fmt.Errorf("petting watchdog: %w", err)
		}
	}
	return nil
}

// Disarm writes the magic character 'V' and closes the device, which stops
// the watchdog (unless the kernel was built with nowayout).
func (d *Device) Disarm() error {
	_, werr := d.f.Write([]byte{'V'})
	cerr := d.f.Close()
	if werr != nil {
		return fmt.Errorf("disarming watchdog: %w", werr)
	}
	if cerr != nil {
		return fmt.Errorf("closing watchdog: %w", cerr)
	}
	return nil
}

// Petter is what Keep needs of a watchdog.
type Petter interface {
	Pet() error
}

// Keep pets w at every tick while health returns nil, until ctx is done.
// While unhealthy it stops petting, so the hardware resets the machine after
// its timeout; it logs the change both ways, with the reason.
func Keep(ctx context.Context, w Petter, health func() error, tick <-chan time.Time, log *slog.Logger) {
	log = log.With("component", "watchdog")
	wasHealthy := true
	check := func() {
		err := health()
		h := err == nil
		switch {
		case h && !wasHealthy:
			log.Info("system healthy again; petting the watchdog")
		case !h && wasHealthy:
			log.Error("system unhealthy; no longer petting the watchdog, the machine resets unless it recovers", "reason", err)
		}
		wasHealthy = h
		if h {
			if err := w.Pet(); err != nil {
				log.Warn("petting watchdog failed", "err", err)
			}
		}
	}
	check()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			check()
		}
	}
}
