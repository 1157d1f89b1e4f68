package console

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

func TestShellItem(t *testing.T) {
	exitErr := exec.Command("/bin/sh", "-c", "exit 2").Run()
	if _, ok := errors.AsType[*exec.ExitError](exitErr); !ok {
		t.Skipf("cannot make an *exec.ExitError with /bin/sh here: %v", exitErr)
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"clean exit", nil, "# (fake shell)\nthe shell exited.\n"},
		{"exit status", exitErr, "the shell exited: exit status 2\n"},
		{"missing", fmt.Errorf("%w at /bin/gosh: stat: no such file", ErrNoShell),
			"error: no shell at /bin/gosh: stat: no such file (the image must include u-root's gosh, or the console's shell path must name a shell)\n"},
		{"start fails", errTest, "error: running the shell: test failure\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakes()
			f.shell.err = tt.err
			got := run(t, f.console(t), "\n6\n")
			if f.shell.calls != 1 {
				t.Errorf("RunShell calls = %d, want 1", f.shell.calls)
			}
			if want := "starting a shell; type exit to come back to this menu.\n"; !strings.Contains(got, want) {
				t.Errorf("output lacks %q; output:\n%s", want, got)
			}
			if !strings.Contains(got, tt.want+"\nkiln recovery menu") {
				t.Errorf("output lacks %q followed by the menu; output:\n%s", tt.want, got)
			}
		})
	}
}

func TestExecShellErrors(t *testing.T) {
	tests := []struct {
		name    string
		shell   ExecShell
		wantIs  error
		wantMsg string
	}{
		{"missing binary", ExecShell{Path: "/nonexistent/gosh"}, ErrNoShell, "no shell at /nonexistent/gosh: "},
		{"not a terminal", ExecShell{Path: "/bin/sh"}, nil, "a shell needs a real terminal, not a *bytes.Buffer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.shell.RunShell(t.Context(), &bytes.Buffer{})
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantMsg) || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) {
				t.Errorf("RunShell() = %v, want an error starting %q (is %v)", err, tt.wantMsg, tt.wantIs)
			}
		})
	}
}
