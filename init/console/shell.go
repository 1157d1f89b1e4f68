package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
)

// ShellRunner runs an interactive shell on the terminal and returns when it exits.
// ExecShell is the real one.
type ShellRunner interface {
	RunShell(ctx context.Context, tty io.ReadWriter) error
}

// reopener is a terminal that can be opened afresh ([TTY]). A shell that
// controlled a serial line or a virtual console hangs it up when it exits, and
// the menu's own file then reads only end of input until it is reopened.
type reopener interface {
	Reopen() error
}

// ErrNoShell is returned by a ShellRunner whose shell binary is missing.
var ErrNoShell = errors.New("no shell")

// DefaultShell is u-root's gosh as the image installs it.
const DefaultShell = "/bin/gosh"

// shell is menu item 6.
func (s *session) shell(ctx context.Context) error {
	if s.c.Shell == nil {
		return fmt.Errorf("shell: %w", errNotAvailable)
	}
	s.printf("starting a shell; type exit to come back to this menu.\n")
	s.logger().Info("operator started a shell")
	err := s.c.Shell.RunShell(ctx, s.tty)
	// No read is pending (the menu took its last line before running this item),
	// so the terminal can be swapped under the reader.
	if !s.reopen() {
		return errNoInput // the menu goes idle, which retries the reopen
	}
	var exit *exec.ExitError
	switch {
	case errors.Is(err, ErrNoShell):
		return fmt.Errorf("%w (the image must include u-root's gosh, or the console's shell path must name a shell)", err)
	case errors.As(err, &exit):
		s.printf("the shell exited: %v\n", exit)
	case err != nil:
		return fmt.Errorf("running the shell: %w", err)
	default:
		s.printf("the shell exited.\n")
	}
	return nil
}
