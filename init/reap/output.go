package reap

import (
	"errors"
	"os/exec"

	"kiln.dev/kiln/internal/syncbuf"
)

// wrapOutput mirrors exec.Cmd.Output: stdout is returned, stderr is kept on
// an *exec.ExitError.
func wrapOutput(cmd *exec.Cmd, run func(*exec.Cmd) error) ([]byte, error) {
	var stdout, stderr syncbuf.Buffer
	cmd.Stdout = &stdout
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	err := run(cmd)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ee.Stderr = stderr.Bytes()
	}
	return stdout.Bytes(), err
}
