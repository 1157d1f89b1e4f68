package pid1

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/init/datapart"
	"kiln.dev/kiln/internal/syncbuf"
)

const problemFull = "kiln-init: PROBLEM: data partition is full ("

func TestWatchDataSpace(t *testing.T) {
	const mib = 1 << 20
	// Each tick reads the next Space; the partition fills, stays full, is
	// cleaned up and fills again: two reports, one per time it became full.
	spaces := []datapart.Space{
		{Free: 500 * mib, Total: 1024 * mib},
		{Free: 10 * mib, Total: 1024 * mib},
		{Free: 9 * mib, Total: 1024 * mib},
		{},
		{Free: 400 * mib, Total: 1024 * mib},
		{Free: 1 * mib, Total: 1024 * mib},
	}
	var i int
	statfs := func(path string) (datapart.Space, error) {
		if path != "/data" {
			t.Errorf("statfs(%q), want /data", path)
		}
		defer func() { i++ }()
		if i == 3 {
			return datapart.Space{}, errors.New("statfs failed")
		}
		return spaces[i], nil
	}
	var out syncbuf.Buffer
	p := New(Options{Out: &out})
	full := p.checkDataSpace("/data", statfs, false)
	if full || out.String() != "" {
		t.Fatalf("checkDataSpace(500 MiB free) = %v, printed %q; want false, nothing", full, out.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	done := make(chan struct{})
	go func() { p.watchDataSpace(ctx, "/data", statfs, tick, full); close(done) }()
	for range len(spaces) - 1 {
		tick <- time.Time{}
	}
	cancel()
	<-done
	got := out.String()
	if n := strings.Count(got, problemFull); n != 2 {
		t.Errorf("watchDataSpace printed %d full-partition problems, want 2:\n%s", n, got)
	}
	for _, want := range []string{problemFull + "10 MiB free of 1024 MiB)", problemFull + "1 MiB free of 1024 MiB)", "/data/log", "bigger disk"} {
		if !strings.Contains(got, want) {
			t.Errorf("watchDataSpace output lacks %q:\n%s", want, got)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.problems) != 2 {
		t.Errorf("problems recorded = %d, want 2", len(p.problems))
	}
}

// TestDataSpaceFullTmpfs fills a tiny real file system.
func TestDataSpaceFullTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): this test needs CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	fh, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = fh.Write(make([]byte, 64<<10))
	}
	fh.Close()
	var out syncbuf.Buffer
	p := New(Options{Out: &out})
	if !p.checkDataSpace(dir, datapart.HostStatfs, false) {
		t.Errorf("checkDataSpace(full tmpfs) = false, want true")
	}
	if got := out.String(); !strings.Contains(got, problemFull+"0 MiB free of 1 MiB)") {
		t.Errorf("checkDataSpace(full tmpfs) printed %q, want %q", got, problemFull+"0 MiB free of 1 MiB)")
	}
	if _, err := os.Stat(filepath.Join(dir, "filler")); err != nil {
		t.Errorf("the full file system was changed: %v", err)
	}
}
