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

// ExecShell runs a shell binary on the terminal in a new session with the
// terminal as its controlling tty, so job control and Ctrl-C work in it.
type ExecShell struct {
	// Path of the shell; "" means DefaultShell.
	Path string
	// Args after the program name.
	Args []string
	// Env of the shell; nil means a minimal PATH, HOME and TERM.
	Env []string
	// Dir is the working directory; "" means "/".
	Dir string
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
		if f, err = t.reopen(); err != nil {
			return err
		}
		defer f.Close()
		if err := t.shellMode(); err != nil {
			return err
		}
		defer t.consoleMode()
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
	err := cmd.Run()
	if errors.Is(err, syscall.ECHILD) {
		// PID 1's zombie reaper collected the shell before Wait could.
		return nil
	}
	return err
}
