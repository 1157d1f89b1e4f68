package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRing(t *testing.T) {
	texts := func(ls []Line) []string {
		var out []string
		for _, l := range ls {
			out = append(out, fmt.Sprintf("%d:%s", l.Seq, l.Text))
		}
		return out
	}
	r := NewRing(3)
	if got, _ := r.Since(0); len(got) != 0 {
		t.Errorf("empty ring Since(0) = %v, want nothing", got)
	}
	_, wake := r.Since(0)
	for _, s := range []string{"a", "b", "c", "d", "e"} {
		r.Append(Line{Text: s})
	}
	select {
	case <-wake:
	default:
		t.Errorf("Append did not close the wake channel")
	}
	for _, tc := range []struct {
		since uint64
		want  []string
	}{
		{0, []string{"3:c", "4:d", "5:e"}},
		{3, []string{"4:d", "5:e"}},
		{4, []string{"5:e"}},
		{5, nil},
		{99, nil},
	} {
		got, _ := r.Since(tc.since)
		if diff := cmp.Diff(tc.want, texts(got)); diff != "" {
			t.Errorf("Since(%d) (-want +got):\n%s", tc.since, diff)
		}
	}
}

func TestRotatingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "svc.log")
	w := &rotatingFile{path: path, max: 100, files: 3}
	line := strings.Repeat("x", 39) + "\n" // 40 bytes: two fit in a file, a third rotates
	for i := range 9 {
		if _, err := fmt.Fprintf(w, "%d%s", i, line[1:]); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	got := map[string]string{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		var firsts []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			firsts = append(firsts, l[:1])
		}
		got[e.Name()] = strings.Join(firsts, ",")
	}
	// 9 lines of 40 bytes with max 100: files hold two lines each; 0,1 were rotated away.
	want := map[string]string{"svc.log": "8", "svc.log.1": "6,7", "svc.log.2": "4,5"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files after 9 writes (-want +got):\n%s", diff)
	}
	// Reopening appends to the current file.
	w = &rotatingFile{path: path, max: 100, files: 3}
	fmt.Fprint(w, "9"+line[1:])
	w.Close()
	if b, _ := os.ReadFile(path); len(b) != 80 {
		t.Errorf("svc.log after reopen has %d bytes, want 80", len(b))
	}
}

func TestLineString(t *testing.T) {
	l := Line{Seq: 7, Time: time.Date(2025, 3, 4, 5, 6, 7, 890e6, time.UTC), Stream: StreamSupervisor, Text: "started pid 42"}
	if got, want := l.String(), "2025-03-04T05:06:07.890Z [supervisor] started pid 42"; got != want {
		t.Errorf("Line.String() = %q, want %q", got, want)
	}
}

// stepClock is a Clock whose time moves only when the test says so.
type stepClock struct{ now time.Time }

func (c *stepClock) Now() time.Time                         { return c.now }
func (c *stepClock) After(d time.Duration) <-chan time.Time { return make(chan time.Time) }

// fullFile is a log file that fails with ENOSPC while full is set.
type fullFile struct {
	full  bool
	lines []string
}

func (f *fullFile) Write(p []byte) (int, error) {
	if f.full {
		return 0, &os.PathError{Op: "write", Path: "/data/log/x.log", Err: syscall.ENOSPC}
	}
	f.lines = append(f.lines, strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func (f *fullFile) Close() error { return nil }

func TestSinkFullDisk(t *testing.T) {
	clock := &stepClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	file := &fullFile{}
	var reported []error
	s := &sink{name: "x", ring: NewRing(100), file: file, clock: clock, onFileError: func(err error) { reported = append(reported, err) }}
	texts := func(ls []Line) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.Text)
		}
		return out
	}

	s.add(StreamStdout, "one")
	file.full = true
	for _, text := range []string{"two", "three"} {
		s.add(StreamStdout, text)
		clock.now = clock.now.Add(time.Second)
	}
	clock.now = clock.now.Add(fileRetry) // retried: still full, no new report
	s.add(StreamStdout, "four")
	file.full = false
	s.add(StreamStdout, "five") // within the new retry interval: memory only
	clock.now = clock.now.Add(fileRetry)
	s.add(StreamStdout, "six")

	ring, _ := s.ring.Since(0)
	wantRing := []string{"one", "two", "log file not written: data partition full; lines stay in memory, retrying every 30s",
		"three", "four", "five", "six", "log file written again; 4 earlier lines were kept only in memory"}
	if diff := cmp.Diff(wantRing, texts(ring)); diff != "" {
		t.Errorf("ring after a full disk (-want +got):\n%s", diff)
	}
	var fileTexts []string
	for _, l := range file.lines {
		fileTexts = append(fileTexts, l[strings.Index(l, "] ")+2:])
	}
	wantFile := []string{"one", "six", "log file written again; 4 earlier lines were kept only in memory"}
	if diff := cmp.Diff(wantFile, fileTexts); diff != "" {
		t.Errorf("file after a full disk (-want +got):\n%s", diff)
	}
	if len(reported) != 1 || !errors.Is(reported[0], syscall.ENOSPC) {
		t.Errorf("onFileError calls = %v, want one ENOSPC", reported)
	}
}
