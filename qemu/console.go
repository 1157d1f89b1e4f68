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

// partialSettle is how long the line being written must stay unchanged before
// Expect looks at it: a prompt waits for input, while a line still arriving
// would match a pattern with a variable tail too early.
const partialSettle = 150 * time.Millisecond

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
	// esc is the escape-sequence parser state: 0 none, 1 after ESC, 2 in a
	// CSI sequence, 3 in an OSC string, 4 after ESC in an OSC string.
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
		case 1: // after ESC: CSI, OSC or a two-byte sequence
			switch b {
			case '[':
				c.esc = 2
			case ']':
				c.esc = 3
			default:
				c.esc = 0
			}
			continue
		case 2: // CSI parameters until a final byte
			if b >= 0x40 && b <= 0x7e {
				c.esc = 0
			}
			continue
		case 3: // OSC string until BEL or ESC \
			switch b {
			case 0x07:
				c.esc = 0
			case 0x1b:
				c.esc = 4
			case '\n': // a runaway string: give up on it
				c.esc = 0
			}
			if c.esc != 0 || b != '\n' {
				continue
			}
		case 4:
			c.esc = 0
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
// the match and returns the whole line. The line being written is only looked
// at once it has settled (see partialSettle) at now. A complete line matching
// a failOn pattern first is returned with failed set, and the cursor moves
// past it. The caller holds mu.
func (c *console) scan(re *regexp.Regexp, now time.Time) (l Line, ok, failed bool) {
	total := c.dropped + len(c.lines)
	last := total
	if now.Sub(c.partialAt) < partialSettle {
		last = total - 1
	}
	for n := max(c.cursorLine, c.dropped); n <= last; n++ {
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
		now := time.Now()
		l, ok, failed := c.scan(re, now)
		ended, endErr, changed := c.ended, c.endErr, c.changed
		settle := c.partialAt.Add(partialSettle).Sub(now)
		if ended && !ok && !failed {
			l, ok, failed = c.scan(re, now.Add(partialSettle)) // nothing more will arrive
		}
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
		var recheck *time.Timer // fires when the line being written settles
		var recheckC <-chan time.Time
		if settle > 0 {
			recheck = time.NewTimer(settle)
			recheckC = recheck.C
		}
		var err error
		select {
		case <-changed:
		case <-recheckC:
		case <-timer.C:
			err = fmt.Errorf("waiting %v for console line matching %q: %w\n%s", timeout, re, ErrTimeout, c.tailText())
		case <-ctx.Done():
			err = fmt.Errorf("waiting for console line matching %q: %w\n%s", re, ctx.Err(), c.tailText())
		}
		if recheck != nil {
			recheck.Stop()
		}
		if err != nil {
			return Line{}, err
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

// quiet waits until no output has arrived for d, up to timeout.
func (c *console) quiet(ctx context.Context, d, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		last, ended, changed := c.partialAt, c.ended, c.changed
		c.mu.Unlock()
		if ended {
			return fmt.Errorf("waiting for the console to be quiet: %w", ErrExited)
		}
		wait := time.Until(last.Add(d))
		if wait <= 0 {
			return nil
		}
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("waiting %v for %v without console output: %w", timeout, d, ErrTimeout)
		}
		t := time.NewTimer(wait)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for the console to be quiet: %w", ctx.Err())
		}
		t.Stop()
	}
}
