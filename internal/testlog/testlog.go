// Package testlog routes what code under test logs to the test's own log
// (t.Log), so it shows next to the failure it explains and only when the test
// fails or runs with -v.
package testlog

import (
	"io"
	"log/slog"
	"strings"
	"testing"
)

// Writer returns a writer that passes each Write to t.Log as one entry,
// without its trailing newline (t.Log adds its own).
func Writer(t testing.TB) io.Writer { return writer{t} }

// New returns a text logger writing to t.Log that keeps records at level and
// above.
func New(t testing.TB, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewTextHandler(Writer(t), &slog.HandlerOptions{Level: level}))
}

type writer struct{ t testing.TB }

func (w writer) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
