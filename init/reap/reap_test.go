package reap

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// subreaper makes the test process adopt orphans, as PID 1 does.
func subreaper(t *testing.T) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("cannot become a child subreaper: %v", err)
	}
}

func TestOwnedStatusKeptAndOrphansReaped(t *testing.T) {
	subreaper(t)
	r := New(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Reap(ctx)

	// An owned child exits with 3 while the reaper runs: its status must reach Wait.
	for i := 0; i < 20; i++ {
		cmd := exec.Command("sh", "-c", "exit 3")
		if err := r.Start(cmd); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // let SIGCHLD reach the reaper first
		err := r.Wait(cmd)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("Wait(sh -c 'exit 3') = %v, want exit status 3", err)
		}
	}
	// sh leaves an orphan (sleep) that is re-parented to us and must be reaped.
	out, err := r.Output(exec.Command("sh", "-c", "sleep 0.1 & echo $!"))
	if err != nil {
		t.Fatal(err)
	}
	orphan := strings.TrimSpace(string(out))
	deadline := time.Now().Add(5 * time.Second)
	for r.Reaped() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("orphan %s not reaped within 5s", orphan)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCombinedOutput(t *testing.T) {
	r := New(slog.New(slog.DiscardHandler))
	out, err := r.CombinedOutput(exec.Command("sh", "-c", "echo out; echo err >&2; exit 4"))
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 {
		t.Errorf("CombinedOutput error = %v, want exit status 4", err)
	}
	if got := string(out); !strings.Contains(got, "out") || !strings.Contains(got, "err") {
		t.Errorf("CombinedOutput = %q, want both streams", got)
	}
}
