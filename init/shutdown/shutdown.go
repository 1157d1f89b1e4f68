// Package shutdown runs kiln's ordered shutdown: stop the services (the
// supervisor sends SIGTERM, then SIGKILL after its deadline), signal every
// remaining process, sync, unmount the writable file systems (or remount them
// read-only when busy), disarm the watchdog, print the console marker and ask
// the kernel to reboot or power off.
package shutdown

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"syscall"
	"time"
)

// Action is how the machine ends up.
type Action int

const (
	Reboot Action = iota
	Poweroff
)

func (a Action) String() string {
	if a == Poweroff {
		return "poweroff"
	}
	return "reboot"
}

// System is the kernel interface shutdown needs; Linux is the real one.
type System interface {
	// KillAll sends sig to every process but the caller (kill(-1, sig)).
	KillAll(sig syscall.Signal) error
	// Others counts live processes other than the caller and kernel threads.
	Others() (int, error)
	Sync()
	Unmount(target string) error
	RemountReadOnly(target string) error
	// Halt reboots or powers off; it returns only on failure.
	Halt(a Action) error
}

// Plan is one shutdown.
type Plan struct {
	// Out gets the console markers ("kiln-init: reached poweroff").
	Out io.Writer
	// StopServices stops every service; it gets ServiceDeadline to do so. May be nil.
	StopServices func(ctx context.Context) error
	// ServiceDeadline bounds StopServices; default 15 s (the supervisor's own
	// SIGTERM→SIGKILL deadline is shorter).
	ServiceDeadline time.Duration
	// KillGrace is how long processes get between SIGTERM and SIGKILL; default 3 s.
	KillGrace time.Duration
	// Unmount lists mount points to unmount, in order (/data, /boot/efi).
	Unmount []string
	// Disarm stops the hardware watchdog just before halting. May be nil.
	Disarm func() error
	Sys    System
	Log    *slog.Logger
	// Sleep waits between polls; default time.Sleep.
	Sleep func(time.Duration)
}

// Run shuts the machine down. It returns only when the final reboot(2) fails.
func (p Plan) Run(ctx context.Context, a Action) error {
	if p.ServiceDeadline == 0 {
		p.ServiceDeadline = 15 * time.Second
	}
	if p.KillGrace == 0 {
		p.KillGrace = 3 * time.Second
	}
	if p.Sleep == nil {
		p.Sleep = time.Sleep
	}
	log := p.Log.With("component", "shutdown")
	fmt.Fprintf(p.Out, "kiln-init: shutting down for %s\n", a)
	if p.StopServices != nil {
		sctx, cancel := context.WithTimeout(ctx, p.ServiceDeadline)
		if err := p.StopServices(sctx); err != nil {
			log.Warn("stopping services", "err", err)
		}
		cancel()
	}
	p.killRemaining(log)
	p.Sys.Sync()
	for _, m := range p.Unmount {
		if err := p.Sys.Unmount(m); err != nil {
			if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOENT) {
				continue // not mounted
			}
			if rerr := p.Sys.RemountReadOnly(m); rerr != nil {
				log.Warn("file system busy and cannot be made read-only; relying on sync", "mount", m, "unmount", err, "remount", rerr)
			} else {
				log.Warn("file system busy; remounted read-only", "mount", m, "err", err)
			}
		}
	}
	p.Sys.Sync()
	if p.Disarm != nil {
		if err := p.Disarm(); err != nil {
			log.Warn("disarming watchdog", "err", err)
		}
	}
	fmt.Fprintf(p.Out, "kiln-init: reached %s\n", a)
	err := p.Sys.Halt(a)
	return fmt.Errorf("asking the kernel to %s: %w", a, err)
}

// killRemaining sends SIGTERM to every other process, waits up to KillGrace
// for them to exit, then sends SIGKILL.
func (p Plan) killRemaining(log *slog.Logger) {
	if n, err := p.Sys.Others(); err != nil || n == 0 {
		return
	}
	_ = p.Sys.KillAll(syscall.SIGTERM)
	const step = 100 * time.Millisecond
	for waited := time.Duration(0); waited < p.KillGrace; waited += step {
		if n, err := p.Sys.Others(); err != nil || n == 0 {
			return
		}
		p.Sleep(step)
	}
	n, _ := p.Sys.Others()
	log.Warn("processes still running after SIGTERM; sending SIGKILL", "count", n)
	_ = p.Sys.KillAll(syscall.SIGKILL)
	for waited := time.Duration(0); waited < time.Second; waited += step {
		if n, err := p.Sys.Others(); err != nil || n == 0 {
			return
		}
		p.Sleep(step)
	}
}
