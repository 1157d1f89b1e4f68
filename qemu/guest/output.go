package guest

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"strings"

	"kiln.dev/kiln/qemu/guest/internal/job"
)

// maxLine bounds one output line; a longer run without a newline is passed
// on in pieces of this size.
const maxLine = 64 << 10

// scanOutput reads the guest's output stream (the test's stdout and stderr,
// then the end marker) until EOF, passing every non-empty line without its
// line end to logLine, and every marker for nonce to onMarker (if set). It
// returns the last marker, if any.
func scanOutput(r io.Reader, nonce string, logLine func(string), onMarker func(job.Marker)) (m job.Marker, seen bool, err error) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		b, rerr := br.ReadSlice('\n')
		if len(b) > 0 {
			line := strings.TrimRight(string(b), "\r\n")
			if mk, ok := job.ParseMarker(nonce, line); ok {
				m, seen = mk, true
				if onMarker != nil {
					onMarker(mk)
				}
			} else if line != "" {
				logLine(line)
			}
		}
		switch {
		case rerr == nil, errors.Is(rerr, bufio.ErrBufferFull):
		case errors.Is(rerr, io.EOF):
			return m, seen, nil
		default:
			return m, seen, rerr
		}
	}
}

// lineWriter passes each complete line written to it to emit (without the
// line end; '\r' dropped), and the rest on Flush.
type lineWriter struct {
	emit func(string)
	buf  []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			if len(w.buf) >= maxLine {
				w.emit(strings.TrimRight(string(w.buf), "\r"))
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		w.emit(strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
}

// Flush emits a last partial line.
func (w *lineWriter) Flush() {
	if len(w.buf) > 0 {
		w.emit(strings.TrimRight(string(w.buf), "\r"))
		w.buf = nil
	}
}

// benchMetrics parses a benchmark result line of the benchmark name, such
// as "BenchmarkX-2   	       1	  12345 ns/op	  4.50 MB/s", into its
// iteration count and metrics by unit.
func benchMetrics(name, line string) (n int, metrics map[string]float64, ok bool) {
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 {
		return 0, nil, false
	}
	rest, ok := strings.CutPrefix(f[0], name)
	if !ok {
		return 0, nil, false
	}
	if rest != "" { // the GOMAXPROCS suffix
		cpu, ok := strings.CutPrefix(rest, "-")
		if _, err := strconv.Atoi(cpu); !ok || err != nil {
			return 0, nil, false
		}
	}
	n, err := strconv.Atoi(f[1])
	if err != nil || n < 1 {
		return 0, nil, false
	}
	metrics = map[string]float64{}
	for i := 2; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return 0, nil, false
		}
		metrics[f[i+1]] = v
	}
	return n, metrics, true
}
