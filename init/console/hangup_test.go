package console

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kiln.dev/kiln/internal/syncbuf"
)

// hangupTTY plays a serial line the kernel hangs up when the shell, the
// session leader it controlled, exits: from then on the file the console holds
// reads end of input and fails writes with EIO, until Reopen opens a fresh
// file. Input continues from the same script on the fresh file.
type hangupTTY struct {
	in  *lineInput
	out io.Writer
	// failReopens makes that many Reopen calls fail first.
	failReopens int

	// mu guards hungUp and reopens.
	mu      sync.Mutex
	hungUp  bool
	reopens int
}

func (h *hangupTTY) dead() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hungUp
}

func (h *hangupTTY) Read(p []byte) (int, error) {
	if h.dead() {
		return 0, io.EOF // a hung-up file reads 0 bytes
	}
	return h.in.Read(p)
}

func (h *hangupTTY) Write(p []byte) (int, error) {
	if h.dead() {
		return 0, syscall.EIO
	}
	return h.out.Write(p)
}

func (h *hangupTTY) Reopen() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reopens++
	if h.failReopens > 0 {
		h.failReopens--
		return errTest
	}
	h.hungUp = false
	return nil
}

func (h *hangupTTY) hangup() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hungUp = true
}

func (h *hangupTTY) reopenCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reopens
}

// hangupShell writes to the terminal, then hangs it up as its exit would.
type hangupShell struct{ tty *hangupTTY }

func (s hangupShell) RunShell(_ context.Context, tty io.ReadWriter) error {
	fmt.Fprintf(tty, "# exit\n")
	s.tty.hangup()
	return nil
}

// TestMenuComesBackAfterAHangup: the shell's exit hangs up the terminal; the
// menu reopens it and carries on, and the hangup's end of input is never taken
// for the operator's input.
func TestMenuComesBackAfterAHangup(t *testing.T) {
	tests := []struct {
		name        string
		failReopens int
		input       string   // after "6"; the terminal then waits
		want        []string // in order, after the shell's output
		reopens     int
	}{
		{"reopened at once", 0, "q\n", []string{
			"the shell exited.\n", "kiln recovery menu", "choice [1-8, q]: q\n", "press Enter for the recovery menu\n"}, 1},
		// The menu's output is lost on the dead file; after the silent wait the
		// terminal is reopened and Enter opens the menu again.
		{"reopened after a wait", 1, "\n", []string{"kiln recovery menu", "choice [1-8, q]: "}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &syncbuf.Buffer{}
			in := &lineInput{rest: "\n6\n" + tt.input, echo: out, eof: make(chan struct{}), hold: make(chan struct{})}
			tty := &hangupTTY{in: in, out: out, failReopens: tt.failReopens}
			c := newFakes().console(t)
			c.Shell = hangupShell{tty}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx, tty) }()
			defer func() {
				cancel()
				close(in.hold) // releases the pending read
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("Run did not return after cancel")
				}
			}()

			s := &script{in: in, out: out}
			s.waitOutput(t, "# exit\n")
			rest := func() string { return after(out.String(), "# exit\n") }
			deadline := time.Now().Add(10 * time.Second)
			for !containsInOrder(rest(), tt.want) {
				if time.Now().After(deadline) {
					t.Fatalf("after the hangup the console did not show %q (in order); output:\n%s", tt.want, out.String())
				}
				time.Sleep(5 * time.Millisecond)
			}
			// The script is used up and the terminal is live: the console now
			// waits in a read, so nothing reopens the terminal any more.
			if got := tty.reopenCount(); got != tt.reopens {
				t.Errorf("Reopen calls = %d, want %d", got, tt.reopens)
			}
			if strings.Contains(rest(), "error") {
				t.Errorf("the console reported an error after the hangup; output:\n%s", out.String())
			}
		})
	}
}

// containsInOrder reports whether s holds every string of want, in order.
func containsInOrder(s string, want []string) bool {
	for _, w := range want {
		i := strings.Index(s, w)
		if i < 0 {
			return false
		}
		s = s[i+len(w):]
	}
	return true
}

// TestEndOfInputReopens: a terminal that reports end of input (a hangup that
// did not come from the shell, or Ctrl-D) is reopened after the silent wait,
// and a reopen that fails is retried on the next wait.
func TestEndOfInputReopens(t *testing.T) {
	out := &syncbuf.Buffer{}
	in := &lineInput{rest: "\n", echo: out, eof: make(chan struct{}), hold: make(chan struct{})}
	tty := &hangupTTY{in: in, out: out, failReopens: 2}
	tty.hangup()
	c := newFakes().console(t)
	c.RetryDelay = time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, tty) }()
	defer func() {
		cancel()
		close(in.hold)
		<-done
	}()
	s := &script{in: in, out: out}
	s.waitOutput(t, "choice [1-8, q]: ")
	if got := tty.reopenCount(); got != 3 {
		t.Errorf("Reopen calls = %d, want 3 (two failures, then success)", got)
	}
}
