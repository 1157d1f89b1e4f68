package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Starter starts a process and waits for it. PID 1's reaper (*reap.Reaper) is
// one: every child of PID 1 must go through it, or the reaper may collect the
// child's exit status before Wait does.
type Starter interface {
	Start(cmd *exec.Cmd) error
	Wait(cmd *exec.Cmd) error
}

// ExecShell runs a shell binary on the terminal in a new session with the
// terminal as its controlling tty, so job control and Ctrl-C work in it.
//
// When the shell (the session leader) exits, the kernel hangs up a terminal
// that is not a pseudo-terminal (a serial line, a virtual console): every open
// file of it, the console's own included, then reads only end of input. The
// console's menu therefore reopens a [TTY] after the shell (see [TTY.Reopen]).
type ExecShell struct {
	// Path of the shell; "" means DefaultShell.
	Path string
	// Args after the program name.
	Args []string
	// Env of the shell; nil means a minimal PATH, HOME and TERM.
	Env []string
	// Dir is the working directory; "" means "/".
	Dir string
	// Starter starts the shell and waits for it; nil means cmd.Start and
	// cmd.Wait. PID 1 passes its reaper.
	Starter Starter
}

// RunShell implements ShellRunner. tty must be a *TTY (or an *os.File, which
// then becomes blocking: os/exec hands it over with Fd). It returns an error
// wrapping ErrNoShell if the shell is missing, and the shell's *exec.ExitError
// if it exited unsuccessfully.
func (e ExecShell) RunShell(ctx context.Context, tty io.ReadWriter) error {
	path := e.Path
	if path == "" {
		path = DefaultShell
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w at %s: %w", ErrNoShell, path, err)
	}
	var f *os.File
	switch t := tty.(type) {
	case *os.File:
		f = t
	case *TTY:
		var err error
		if f, err = t.openForChild(); err != nil {
			return err
		}
		defer f.Close()
		if err := t.shellMode(); err != nil {
			return err
		}
		defer t.consoleMode() // fails on a hung-up file; the menu then reopens t
	default:
		return fmt.Errorf("a shell needs a real terminal, not a %T", tty)
	}

	cmd := exec.CommandContext(ctx, path, e.Args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, f
	cmd.Dir = e.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Env = e.Env
	if cmd.Env == nil {
		cmd.Env = []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/", "TERM=linux"}
	}
	// Ctty is the child's fd 0, the terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	// On shutdown hang up the shell's whole session, then kill it if it lingers.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGHUP) }
	cmd.WaitDelay = 3 * time.Second
	start, wait := cmd.Start, cmd.Wait
	if e.Starter != nil {
		start = func() error { return e.Starter.Start(cmd) }
		wait = func() error { return e.Starter.Wait(cmd) }
	}
	if err := start(); err != nil {
		return err
	}
	err := wait()
	if errors.Is(err, syscall.ECHILD) {
		// A zombie reaper that the shell did not go through (no Starter)
		// collected it before Wait could.
		return nil
	}
	return err
}
