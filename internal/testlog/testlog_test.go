package testlog

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps what is logged.
type recorder struct {
	testing.TB
	lines []string
}

func (r *recorder) Log(args ...any) { r.lines = append(r.lines, fmt.Sprint(args...)) }

func TestWriterLogsEachWriteWithoutNewline(t *testing.T) {
	r := &recorder{TB: t}
	w := Writer(r)
	for _, s := range []string{"one\n", "two", "three\n\n"} {
		n, err := w.Write([]byte(s))
		if n != len(s) || err != nil {
			t.Errorf("Write(%q) = %d, %v, want %d, nil", s, n, err, len(s))
		}
	}
	want := []string{"one", "two", "three\n"}
	if strings.Join(r.lines, "|") != strings.Join(want, "|") {
		t.Errorf("logged %q, want %q", r.lines, want)
	}
}

func TestNewKeepsLevel(t *testing.T) {
	r := &recorder{TB: t}
	log := New(r, slog.LevelInfo).With("component", "x")
	log.Debug("hidden")
	log.Info("shown", "k", 1)
	if len(r.lines) != 1 || !strings.Contains(r.lines[0], "msg=shown") || !strings.Contains(r.lines[0], "component=x k=1") {
		t.Errorf("logged %q, want one info line with component=x k=1", r.lines)
	}
}
