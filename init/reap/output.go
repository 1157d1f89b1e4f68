package reap

import (
	"bytes"
	"errors"
	"os/exec"
	"sync"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of stdout and stderr copiers.
type syncBuffer struct {
	// mu guards b.
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// wrapOutput mirrors exec.Cmd.Output: stdout is returned, stderr is kept on
// an *exec.ExitError.
func wrapOutput(cmd *exec.Cmd, run func(*exec.Cmd) error) ([]byte, error) {
	var stdout, stderr syncBuffer
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
