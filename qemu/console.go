package qemu

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Sentinel errors of Expect.
var (
	// ErrTimeout means the console did not show the expected text in time.
	ErrTimeout = errors.New("timed out")
	// ErrExited means QEMU exited before the console showed the expected text.
	ErrExited = errors.New("QEMU exited")
	// ErrFailLine means the console showed a line matching a FailOn pattern
	// (a kernel panic, say) before the expected text.
	ErrFailLine = errors.New("console showed a failure line")
)

// Line is one line of serial console output, with escape sequences and
// carriage returns removed.
type Line struct {
	// At is when the line's last byte arrived on the host.
	At time.Time
	// Text is the line without its line ending.
	Text string
}

// tailLines is how many console lines an Expect error shows.
const tailLines = 40

// maxLines bounds the lines kept in memory; older ones are dropped (the serial
// log file keeps everything).
const maxLines = 100000

// console parses the raw serial byte stream into lines and lets callers wait
// for a line matching a pattern. Lines are numbered from 0 since the VM
// started; the line being written (not yet ended by '\n') has the next number.
type console struct {
	// mu guards every field below.
	mu sync.Mutex
	// lines holds complete lines; lines[0] is line number dropped.
	lines   []Line
	dropped int
	// partial is the line being written, partialAt when it last grew.
	partial   strings.Builder
	partialAt time.Time
	// esc is the escape-sequence parser state: 0 none, 1 after ESC, 2 in CSI.
	esc int
	// cursorLine and cursorOff are where the next Expect starts to look: a
	// line number and a byte offset into that line's text.
	cursorLine, cursorOff int
	// changed is closed and replaced whenever output arrives or the stream ends.
	changed chan struct{}
	// ended is set when the stream has ended (QEMU exited); endErr says why.
	ended  bool
	endErr error
	// failOn are patterns that fail an Expect when a complete line matches
	// them before the expected text.
	failOn []*regexp.Regexp
}

func newConsole() *console { return &console{changed: make(chan struct{})} }

// write feeds raw serial bytes that arrived at time at.
func (c *console) write(p []byte, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range p {
		switch c.esc {
		case 1: // after ESC: CSI or a two-byte sequence
			if b == '[' {
				c.esc = 2
			} else {
				c.esc = 0
			}
			continue
		case 2: // CSI parameters until a final byte
			if b >= 0x40 && b <= 0x7e {
				c.esc = 0
			}
			continue
		}
		switch {
		case b == 0x1b:
			c.esc = 1
		case b == '\n':
			c.lines = append(c.lines, Line{At: at, Text: c.partial.String()})
			c.partial.Reset()
		case b == '\t' || b >= 0x20 && b != 0x7f:
			c.partial.WriteByte(b)
		}
	}
	c.partialAt = at
	if len(c.lines) > maxLines {
		n := len(c.lines) - maxLines/2
		c.lines = append([]Line(nil), c.lines[n:]...)
		c.dropped += n
		if c.cursorLine < c.dropped {
			c.cursorLine, c.cursorOff = c.dropped, 0
		}
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// end marks the end of the stream.
func (c *console) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.ended, c.endErr = true, err
	close(c.changed)
	c.changed = make(chan struct{})
}

// scan looks for re from the cursor on; on a match it moves the cursor past
// the match and returns the whole line. A complete line matching a failOn
// pattern first is returned with failed set, and the cursor moves past it.
// The caller holds mu.
func (c *console) scan(re *regexp.Regexp) (l Line, ok, failed bool) {
	total := c.dropped + len(c.lines)
	for n := max(c.cursorLine, c.dropped); n <= total; n++ {
		if n == total {
			l = Line{At: c.partialAt, Text: c.partial.String()}
		} else {
			l = c.lines[n-c.dropped]
		}
		off := 0
		if n == c.cursorLine {
			off = min(c.cursorOff, len(l.Text))
		}
		if loc := re.FindStringIndex(l.Text[off:]); loc != nil {
			c.cursorLine, c.cursorOff = n, off+loc[1]
			if loc[1] == loc[0] { // an empty match must still make progress
				c.cursorLine, c.cursorOff = n+1, 0
			}
			return l, true, false
		}
		if n < total {
			for _, f := range c.failOn {
				if f.MatchString(l.Text[off:]) {
					c.cursorLine, c.cursorOff = n+1, 0
					return l, false, true
				}
			}
		}
	}
	return Line{}, false, false
}

// expect waits until a line from the cursor on matches re.
func (c *console) expect(ctx context.Context, re *regexp.Regexp, timeout time.Duration) (Line, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		l, ok, failed := c.scan(re)
		ended, endErr, changed := c.ended, c.endErr, c.changed
		c.mu.Unlock()
		if ok {
			return l, nil
		}
		if failed {
			return Line{}, fmt.Errorf("waiting for console line matching %q: %w: %q\n%s", re, ErrFailLine, l.Text, c.tailText())
		}
		if ended {
			status := "exit status 0"
			if endErr != nil {
				status = endErr.Error()
			}
			return Line{}, fmt.Errorf("waiting for console line matching %q: %w (%s)\n%s", re, ErrExited, status, c.tailText())
		}
		select {
		case <-changed:
		case <-timer.C:
			return Line{}, fmt.Errorf("waiting %v for console line matching %q: %w\n%s", timeout, re, ErrTimeout, c.tailText())
		case <-ctx.Done():
			return Line{}, fmt.Errorf("waiting for console line matching %q: %w\n%s", re, ctx.Err(), c.tailText())
		}
	}
}

// snapshot returns every line kept in memory, the partial line last if non-empty.
func (c *console) snapshot() []Line {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]Line(nil), c.lines...)
	if c.partial.Len() > 0 {
		out = append(out, Line{At: c.partialAt, Text: c.partial.String()})
	}
	return out
}

// tailText formats the last console lines for an error message.
func (c *console) tailText() string {
	lines := c.snapshot()
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "--- last %d console lines ---\n", len(lines))
	for _, l := range lines {
		b.WriteString("| ")
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	b.WriteString("--- end of console ---")
	return b.String()
}

// setFailOn replaces the failure patterns.
func (c *console) setFailOn(res []*regexp.Regexp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failOn = res
}
