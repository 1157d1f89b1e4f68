package console

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

var (
	// errInterrupt means the operator pressed Ctrl-C: the current prompt is cancelled.
	errInterrupt = errors.New("interrupted")
	// errNoInput means the terminal gave no line (end of input, hangup, read error).
	errNoInput = errors.New("no input from the terminal")
)

// ctrlC ends a line like Enter does (OpenTTY makes it an end-of-line character)
// and cancels the prompt.
const ctrlC = 0x03

// maxLine bounds one input line; line noise on a serial port must not grow memory.
const maxLine = 1024

type lineResult struct {
	line string
	err  error
}

// lineReader reads the terminal one line per request in its own goroutine. Reading
// only on request keeps the console from stealing input while a shell owns the
// terminal; the goroutine keeps a read that is pending when the menu gives up
// waiting (ctx) for the next readLine.
type lineReader struct {
	req     chan struct{}
	res     chan lineResult
	pending bool // a request was sent and its result not yet taken
	// failures counts consecutive reads that ended in errNoInput, for backoff.
	failures int
}

func newLineReader(r io.Reader) *lineReader {
	lr := &lineReader{req: make(chan struct{}), res: make(chan lineResult, 1)}
	go lr.loop(bufio.NewReader(r))
	return lr
}

func (lr *lineReader) loop(br *bufio.Reader) {
	for range lr.req {
		lr.res <- readLine(br)
	}
}

// close stops the goroutine once its pending read, if any, returns.
func (lr *lineReader) close() { close(lr.req) }

// next returns the channel the next line arrives on, requesting one if needed.
func (lr *lineReader) next() <-chan lineResult {
	if !lr.pending {
		lr.req <- struct{}{}
		lr.pending = true
	}
	return lr.res
}

// take records a result received from next's channel and returns it.
func (lr *lineReader) take(r lineResult) (string, error) {
	lr.pending = false
	if errors.Is(r.err, errNoInput) {
		lr.failures++
	} else {
		lr.failures = 0
	}
	return r.line, r.err
}

// readLine waits for one line (without its line ending) or for ctx.
func (lr *lineReader) readLine(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	select {
	case r := <-lr.next():
		return lr.take(r)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// readLine reads up to '\n' or Ctrl-C. A partial line before end of input counts
// as a line; the end of input is then reported by the next call.
func readLine(br *bufio.Reader) lineResult {
	var b []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			if len(b) > 0 {
				return lineResult{line: string(b)}
			}
			return lineResult{err: fmt.Errorf("%w: %w", errNoInput, err)}
		}
		switch c {
		case '\n':
			return lineResult{line: strings.TrimSuffix(string(b), "\r")}
		case ctrlC:
			return lineResult{err: errInterrupt}
		}
		if len(b) < maxLine {
			b = append(b, c)
		}
	}
}
