package stall

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// steady delivers n bytes, one every gap.
type steady struct {
	n   int
	gap time.Duration
}

func (s *steady) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.gap)
	s.n--
	p[0] = 'x'
	return 1, nil
}

// TestMovingTransferIsNotCut: a stream that keeps moving runs past its
// idle deadline in total; once stopped, the watch cancels nothing.
func TestMovingTransferIsNotCut(t *testing.T) {
	tr := Watch(context.Background(), Deadlines{Idle: 200 * time.Millisecond, Overall: time.Hour}, nil)
	n, err := io.Copy(io.Discard, tr.Reader(&steady{n: 30, gap: 20 * time.Millisecond})) // 600 ms in all
	if n != 30 || err != nil {
		t.Errorf("copy of a moving stream = %d, %v, want 30, nil", n, err)
	}
	if err := context.Cause(tr.Context()); err != nil {
		t.Errorf("context of a moving transfer = %v, want not cancelled", err)
	}
	tr.Stop()
	if c := context.Cause(tr.Context()); errors.Is(c, ErrIdle) || errors.Is(c, ErrOverall) {
		t.Errorf("Stop left cause %v, want none of the stall errors", c)
	}
}
