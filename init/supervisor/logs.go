package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Ring keeps the last lines of one service's log.
type Ring struct {
	// mu guards every field below.
	mu    sync.Mutex
	buf   []Line // circular; buf[(start+i)%len(buf)] is the i-th oldest line
	start int
	n     int
	last  uint64        // Seq of the newest line
	wake  chan struct{} // closed and replaced on every Append
}

// NewRing returns a ring that holds the last capacity lines (at least 1).
func NewRing(capacity int) *Ring {
	return &Ring{buf: make([]Line, max(capacity, 1)), wake: make(chan struct{})}
}

// Append numbers l, stores it (dropping the oldest line when full) and returns it.
func (r *Ring) Append(l Line) Line {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last++
	l.Seq = r.last
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = l
		r.n++
	} else {
		r.buf[r.start] = l
		r.start = (r.start + 1) % len(r.buf)
	}
	close(r.wake)
	r.wake = make(chan struct{})
	return l
}

// Since returns the stored lines with Seq > since, oldest first, and a channel
// that is closed when the next line arrives.
func (r *Ring) Since(since uint64) ([]Line, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Line
	for i := 0; i < r.n; i++ {
		l := r.buf[(r.start+i)%len(r.buf)]
		if l.Seq > since {
			out = append(out, l)
		}
	}
	return out, r.wake
}

// rotatingFile appends to path and, before a write would take it past max
// bytes, renames path to path.1 (path.1 to path.2 …), keeping files files.
type rotatingFile struct {
	path  string
	max   int64
	files int

	// mu guards f and size.
	mu   sync.Mutex
	f    *os.File
	size int64
}

func (w *rotatingFile) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		if err := w.open(); err != nil {
			return 0, err
		}
	}
	if w.size > 0 && w.size+int64(len(p)) > w.max {
		if err := w.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("writing %s: %w", w.path, err)
	}
	return n, nil
}

func (w *rotatingFile) open() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("opening log file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening log file: %w", err)
	}
	w.f, w.size = f, fi.Size()
	return nil
}

func (w *rotatingFile) rotate() error {
	w.f.Close()
	w.f = nil
	if w.files > 1 {
		if err := os.Remove(fmt.Sprintf("%s.%d", w.path, w.files-1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotating log file: %w", err)
		}
		for i := w.files - 2; i >= 1; i-- {
			err := os.Rename(fmt.Sprintf("%s.%d", w.path, i), fmt.Sprintf("%s.%d", w.path, i+1))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("rotating log file: %w", err)
			}
		}
		if err := os.Rename(w.path, w.path+".1"); err != nil {
			return fmt.Errorf("rotating log file: %w", err)
		}
	} else if err := os.Truncate(w.path, 0); err != nil {
		return fmt.Errorf("rotating log file: %w", err)
	}
	return w.open()
}

// Close closes the current file; a later Write opens it again.
func (w *rotatingFile) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// fileRetry is how long a sink leaves its log file alone after a failed
// write (a full data partition) before trying again.
const fileRetry = 30 * time.Second

// sink is where one service's log lines go: its ring, its file and the echo writer.
type sink struct {
	name  string
	ring  *Ring
	file  io.WriteCloser // nil when logs are not persisted
	echo  io.Writer      // nil unless Options.Echo; gets the service's own output
	clock Clock
	// onFileError reports the first failed file write of an outage.
	onFileError func(error)

	// mu serialises writes so file and echo order match Seq order, and
	// guards the fields below.
	mu sync.Mutex
	// retryAt is when to try the file again after a failed write; zero
	// while writes succeed.
	retryAt time.Time
	// unwritten counts the lines of the current outage that are only in the ring.
	unwritten int
}

func (s *sink) add(stream, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.ring.Append(Line{Time: s.clock.Now(), Stream: stream, Text: text})
	if s.file != nil {
		s.persist(l)
	}
	if s.echo != nil && stream != StreamSupervisor { // the supervisor's events go to its Logger
		fmt.Fprintf(s.echo, "%s: %s\n", s.name, text)
	}
}

// persist writes l to the log file. A failed write is reported once, as an
// event in the ring and through onFileError; the file is then left alone for
// fileRetry (the ring keeps every line) and a note says how many lines only
// the ring holds once writing works again.
func (s *sink) persist(l Line) {
	if !s.retryAt.IsZero() && l.Time.Before(s.retryAt) {
		s.unwritten++
		return
	}
	_, err := io.WriteString(s.file, l.String()+"\n")
	if err != nil {
		if s.retryAt.IsZero() {
			s.onFileError(err)
			why := err.Error()
			if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
				why = "data partition full"
			}
			s.ring.Append(Line{Time: l.Time, Stream: StreamSupervisor,
				Text: fmt.Sprintf("log file not written: %s; lines stay in memory, retrying every %s", why, fileRetry)})
		}
		s.unwritten++
		s.retryAt = l.Time.Add(fileRetry)
		return
	}
	if !s.retryAt.IsZero() {
		note := s.ring.Append(Line{Time: l.Time, Stream: StreamSupervisor,
			Text: fmt.Sprintf("log file written again; %d earlier lines were kept only in memory", s.unwritten)})
		io.WriteString(s.file, note.String()+"\n")
		s.retryAt, s.unwritten = time.Time{}, 0
	}
}

func (s *sink) event(format string, args ...any) {
	s.add(StreamSupervisor, fmt.Sprintf(format, args...))
}

// pump splits r into lines for the sink until EOF; lines longer than 16 KiB
// are split.
func (s *sink) pump(r io.Reader, stream string) {
	br := bufio.NewReaderSize(r, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			s.add(stream, strings.TrimRight(string(line), "\r\n"))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// WriteLogs writes the last n lines of the named service's ring to w, one
// Line.String per line. With follow it then writes new lines as they come
// until ctx ends (returning nil) or Stop finishes.
func (s *Supervisor) WriteLogs(ctx context.Context, name string, n int, follow bool, w io.Writer) error {
	lines, wake, err := s.Logs(name, 0)
	if err != nil {
		return err
	}
	var last uint64 // Seq of the last line written or skipped
	if n >= 0 && len(lines) > n {
		last = lines[len(lines)-n-1].Seq
		lines = lines[len(lines)-n:]
	} else if len(lines) > 0 {
		last = lines[0].Seq - 1
	}
	for {
		for _, l := range lines {
			if last != 0 && l.Seq > last+1 {
				if _, err := fmt.Fprintf(w, "--- %d lines dropped (reader too slow) ---\n", l.Seq-last-1); err != nil {
					return err
				}
			}
			if _, err := io.WriteString(w, l.String()+"\n"); err != nil {
				return err
			}
			last = l.Seq
		}
		if !follow {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil
		case <-s.stopDone:
			return nil
		}
		lines, wake, _ = s.Logs(name, last)
	}
}
