package console

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestTour walks every harmless path once and compares the whole screen with a
// golden file, so a reviewer sees what the operator sees.
func TestTour(t *testing.T) {
	input := strings.Join([]string{
		"",               // banner: press Enter
		"1",              // status
		"2",              // addresses
		"3", "dhcp", "n", // logs, no follow
		"4", "no", // roll back, declined
		"5", "wipe", // factory reset, wrong phrase
		"6",      // shell
		"7", "n", // reboot, declined
		"8", "", // power off, default no
		"nine", // invalid
		"q",    // back to the banner
	}, "\n") + "\n"
	f := newFakes()
	got := run(t, f.console(t), input)

	golden := filepath.Join("testdata", "tour.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("reading %s (run go test -update to create it): %v", golden, err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("screen differs from %s (-want +got):\n%s", golden, diff)
	}
	if f.wiper.calls != 0 || len(f.slots.rolledBack) != 0 || f.power.reboots+f.power.poweroffs != 0 {
		t.Errorf("tour acted: wipes %d, roll backs %v, reboots %d, power offs %d; want nothing",
			f.wiper.calls, f.slots.rolledBack, f.power.reboots, f.power.poweroffs)
	}
}

func TestMenuInput(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string // in order
	}{
		{"banner first", "", []string{"lab1  kiln 1.2.0  slot a\n", "press Enter for the recovery menu\n"}},
		{"enter opens the menu", "\n", []string{"press Enter", "kiln recovery menu (lab1)\n", "  8  power off\n", "choice [1-8, q]: "}},
		{"unknown number", "\n9\n", []string{`"9" is not a menu choice: type a number from 1 to 8 and press Enter, or q to leave the menu.` + "\n", "choice [1-8, q]: "}},
		{"word", "\nstatus please\n", []string{`"status please" is not a menu choice`}},
		{"zero", "\n0\n", []string{`"0" is not a menu choice`}},
		{"spaces around a choice", "\n  1  \n", []string{"system: ready\n"}},
		{"empty line shows the menu again", "\n\n", []string{"kiln recovery menu", "choice", "kiln recovery menu", "choice"}},
		{"q leaves to the banner", "\nq\n", []string{"press Enter", "kiln recovery menu", "choice [1-8, q]: ", "lab1  kiln 1.2.0  slot a\n", "press Enter"}},
		{"ctrl-c at the menu prompts again", "\n\x03", []string{"choice [1-8, q]: ^C\nchoice [1-8, q]: "}},
		{"ctrl-c at the banner", "\x03\n", []string{"press Enter for the recovery menu\n^C\n\n", "kiln recovery menu"}},
		{"carriage return", "\r\n1\r\n", []string{"system: ready"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(t, newFakes().console(t), tt.input)
			rest := got
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("Run(%q) output lacks %q (in order); output:\n%s", tt.input, w, got)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestEndOfInputWaitsQuietly(t *testing.T) {
	c := newFakes().console(t)
	c.RetryDelay = 5 * time.Millisecond
	s := start(t, c, "\n")
	waitFor(t, s.in.eof, "end of input")
	outAtEOF := s.out.String()

	// With 5ms doubling up to a minute, 300ms allow about 6 retries; a busy
	// loop would make thousands.
	time.Sleep(300 * time.Millisecond)
	if n := s.in.count(); n > 12 {
		t.Errorf("terminal read %d times in 300ms after end of input, want a few (backoff)", n)
	}
	select {
	case err := <-s.done:
		t.Fatalf("Run returned %v at end of input, want it to keep waiting", err)
	default:
	}
	if got := s.out.String(); got != outAtEOF {
		t.Errorf("console wrote %q after end of input, want silence", strings.TrimPrefix(got, outAtEOF))
	}
	s.stop(t)
}

func TestEndOfInputInsideAnItemActsOnNothing(t *testing.T) {
	f := newFakes()
	run(t, f.console(t), "\n5\n") // factory reset, then the terminal goes away
	run(t, f.console(t), "\n4\n") // roll back, likewise
	if f.wiper.calls != 0 || len(f.slots.rolledBack) != 0 {
		t.Errorf("end of input: wipes %d, roll backs %v; want none", f.wiper.calls, f.slots.rolledBack)
	}
}

func TestCancelWhileReading(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- newFakes().console(t).Run(ctx, terminal{pr, io.Discard}) }()
	time.Sleep(20 * time.Millisecond) // let it block in a read
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func TestCancelWhileFollowingLogs(t *testing.T) {
	f := newFakes()
	s := start(t, f.console(t), "\n3\n1\ny\n")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.out.String(), "dhcp: line two") {
		if time.Now().After(deadline) {
			t.Fatalf("never started following; output:\n%s", s.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.stop(t) // fails if the follower kept Run from returning
}

func TestNothingWired(t *testing.T) {
	c := &Console{Hostname: "bare", RetryDelay: time.Millisecond}
	got := run(t, c, "\n1\n2\n3\n4\n5\n6\n7\n8\n")
	for _, what := range []string{"service status", "addresses", "service logs", "roll back", "factory reset", "shell", "reboot", "power off"} {
		want := "error: " + what + ": not available on this system\n"
		if !strings.Contains(got, want) {
			t.Errorf("Run(nothing wired) lacks %q; output:\n%s", want, got)
		}
	}
	if !strings.Contains(got, "status      unknown\n") {
		t.Errorf("banner without a status source lacks %q; output:\n%s", "status      unknown", got)
	}
}

type panickingServices struct{ fakeServices }

func (*panickingServices) Status(context.Context) (Status, error) { panic("adapter bug") }

func TestPanicInAnAdapterIsReported(t *testing.T) {
	c := newFakes().console(t)
	c.Services = &panickingServices{}
	got := run(t, c, "\n1\n2\n")
	for _, want := range []string{
		"error: internal error (please report it): adapter bug\n", // banner
		"choice [1-8, q]: 1\nerror: internal error (please report it): adapter bug\n",
		"choice [1-8, q]: 2\nlo  -  up\n", // the menu still works
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q; output:\n%s", want, got)
		}
	}
}
