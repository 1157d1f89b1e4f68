// Package reap collects the exit status of orphaned processes that the kernel
// re-parents to PID 1, without stealing the status of children that PID 1's own
// code (the supervisor, fsck, the recovery shell) started with os/exec and is
// waiting for.
//
// The rule: every process PID 1 starts goes through Reaper.Start (or Run),
// which holds the registry lock across cmd.Start and records the pid; the
// reaper peeks at exited children with waitid(WNOWAIT) and reaps only pids it
// does not know. Owned children are left for their cmd.Wait (through
// Reaper.Wait, which forgets the pid afterwards).
package reap

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"kiln.dev/kiln/internal/syncbuf"
)

// Reaper reaps unowned children. The zero value is not usable; call New.
type Reaper struct {
	log *slog.Logger

	// mu guards owned; it is held across cmd.Start so that a child cannot exit
	// and be reaped before it is recorded.
	mu    sync.Mutex
	owned map[int]bool
	// reaped counts orphans reaped, for status and tests.
	reaped int
}

// New returns a reaper. Call Reap to start reaping.
func New(log *slog.Logger) *Reaper {
	return &Reaper{log: log.With("component", "reap"), owned: map[int]bool{}}
}

// Start starts cmd and records its pid as owned; its status is left for Wait.
func (r *Reaper) Start(cmd *exec.Cmd) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	r.owned[cmd.Process.Pid] = true
	return nil
}

// Wait waits for a cmd started with Start and forgets its pid.
func (r *Reaper) Wait(cmd *exec.Cmd) error {
	err := cmd.Wait()
	r.mu.Lock()
	delete(r.owned, cmd.Process.Pid)
	r.mu.Unlock()
	return err
}

// Run is Start followed by Wait, like cmd.Run.
func (r *Reaper) Run(cmd *exec.Cmd) error {
	if err := r.Start(cmd); err != nil {
		return err
	}
	return r.Wait(cmd)
}

// Output is like cmd.Output through the reaper.
func (r *Reaper) Output(cmd *exec.Cmd) ([]byte, error) {
	return wrapOutput(cmd, r.Run)
}

// CombinedOutput is like cmd.CombinedOutput through the reaper.
func (r *Reaper) CombinedOutput(cmd *exec.Cmd) ([]byte, error) {
	var b syncbuf.Buffer
	cmd.Stdout = &b
	cmd.Stderr = &b
	err := r.Run(cmd)
	return b.Bytes(), err
}

// Reaped returns how many orphans were reaped.
func (r *Reaper) Reaped() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reaped
}

// Reap reaps orphans until ctx is done: on every SIGCHLD, and every retry
// interval while an owned child's exit is still pending (it blocks the view
// of others behind it).
func (r *Reaper) Reap(ctx context.Context) {
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, syscall.SIGCHLD)
	defer signal.Stop(sig)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		if blocked := r.ReapOnce(); blocked {
			retry.Reset(50 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-sig:
		case <-retry.C:
		}
	}
}

// ReapOnce reaps every unowned exited child. It reports true when it stopped
// at an owned child that its Wait has not collected yet.
func (r *Reaper) ReapOnce() (blocked bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		pid, err := peek()
		if err != nil || pid == 0 {
			return false // ECHILD (no children) or none exited
		}
		if r.owned[pid] {
			return true
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil {
			return false
		}
		r.reaped++
		r.log.Debug("reaped orphan", "pid", pid, "status", ws.ExitStatus())
	}
}

// siginfo is the part of Linux's siginfo_t that waitid fills for SIGCHLD.
type siginfo struct {
	signo, errno, code, _ int32
	pid                   int32
	uid                   uint32
	status                int32
	_                     [100]byte
}

// peek returns the pid of an exited child without reaping it (0 if none).
func peek() (int, error) {
	var si siginfo
	_, _, e := unix.Syscall6(unix.SYS_WAITID, unix.P_ALL, 0, uintptr(unsafe.Pointer(&si)),
		unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, 0, 0)
	if e != 0 {
		if e == unix.EINTR {
			return peek()
		}
		return 0, fmt.Errorf("waitid: %w", e)
	}
	return int(si.pid), nil
}
