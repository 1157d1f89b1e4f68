package supervisor

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLogsOnFullDataPartition runs a service whose log directory is a full
// tmpfs: the ring keeps every line, one event says the file is not written,
// and the service keeps running.
func TestLogsOnFullDataPartition(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	logDir := t.TempDir()
	if err := unix.Mount("tmpfs", logDir, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): this test needs CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() { unix.Unmount(logDir, unix.MNT_DETACH) })
	fill(t, filepath.Join(logDir, "filler"))

	f := start(t, []Spec{fake("spam", "spam", nil, "FAKE_LINES=100")}, func(o *Options) { o.LogDir = logDir })
	waitReady(t, f)
	var lines []Line
	waitFor(t, 5*time.Second, "the last spam line", func() bool {
		lines, _, _ = f.sup.Logs("spam", 0)
		return slices.ContainsFunc(lines, func(l Line) bool { return strings.HasPrefix(l.Text, "line 099 ") })
	})
	var events int
	for _, l := range lines {
		if strings.HasPrefix(l.Text, "log file not written: data partition full") {
			events++
		}
	}
	if events != 1 {
		t.Errorf("ring has %d \"log file not written: data partition full\" events, want 1", events)
	}
	time.Sleep(100 * time.Millisecond)
	if st := f.service(t, "spam"); st.PID == 0 || st.Restarts != 0 {
		t.Errorf("spam after a full log disk: pid %d, restarts %d; want it still running", st.PID, st.Restarts)
	}
}

// fill writes to path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := fh.Write(buf); err != nil {
			return
		}
	}
}
