package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"kiln.dev/kiln/internal/syncbuf"
)

// The test binary doubles as the supervised service: started with
// KILN_FAKE_SERVICE=1 it runs fakeService instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("KILN_FAKE_SERVICE") == "1" {
		os.Exit(fakeService())
	}
	os.Exit(m.Run())
}

// fakeService behaves as FAKE_MODE says:
//
//	ready       print a line to stdout and stderr, send READY=1, exit 0 on SIGTERM
//	crash       print, exit 3 before becoming ready
//	never-ready print, never send READY=1, exit 0 on SIGTERM
//	ignore-term become ready, ignore SIGTERM
//	spam        print FAKE_LINES lines, then behave like ready
//
// FAKE_READY_DELAY delays READY=1; FAKE_EVENTS names a file that gets
// "<name> start|ready|term" lines; FAKE_PING=1 sends WATCHDOG=1 when asked to.
func fakeService() int {
	name := os.Args[len(os.Args)-1]
	record := func(ev string) {
		path := os.Getenv("FAKE_EVENTS")
		if path == "" {
			return
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(f, "%s %s\n", name, ev)
		f.Close()
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	mode := os.Getenv("FAKE_MODE")
	record("start")
	fmt.Printf("hello stdout from %s\n", name)
	fmt.Fprintf(os.Stderr, "hello stderr from %s\n", name)
	if d, err := time.ParseDuration(os.Getenv("FAKE_READY_DELAY")); err == nil {
		time.Sleep(d)
	}
	switch mode {
	case "crash":
		return 3
	case "never-ready":
		<-term
		record("term")
		return 0
	case "spam":
		var n int
		fmt.Sscan(os.Getenv("FAKE_LINES"), &n)
		for i := range n {
			fmt.Printf("line %03d %s\n", i, strings.Repeat("x", 80))
		}
	}
	record("ready") // before READY=1, so dependents' "start" always comes later
	if _, err := daemon.SdNotify(false, "STATUS=serving "+name+"\nREADY=1"); err != nil {
		fmt.Fprintf(os.Stderr, "sd_notify: %v\n", err)
		return 1
	}
	if interval, _ := daemon.SdWatchdogEnabled(false); interval > 0 && os.Getenv("FAKE_PING") == "1" {
		go func() {
			for range time.Tick(interval / 4) {
				daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			}
		}()
	}
	if mode == "ignore-term" {
		time.Sleep(time.Hour)
		return 0
	}
	<-term
	record("term")
	return 0
}

// fake is a service spec running fakeService in mode with extra env.
func fake(name, mode string, deps []string, env ...string) Spec {
	return Spec{
		Name:    name,
		Args:    []string{"fake", name},
		Env:     append([]string{"KILN_FAKE_SERVICE=1", "FAKE_MODE=" + mode}, env...),
		Deps:    deps,
		Enabled: true,
	}
}

// fixture is one started supervisor with its directories.
type fixture struct {
	sup     *Supervisor
	runDir  string
	logDir  string
	events  string
	console *syncbuf.Buffer
}

// start creates and starts a supervisor for specs; opts may be tweaked by
// edit. Stop runs at cleanup.
func start(t *testing.T, specs []Spec, edit func(*Options)) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{
		runDir:  filepath.Join(dir, "run"),
		logDir:  filepath.Join(dir, "log"),
		events:  filepath.Join(dir, "events"),
		console: &syncbuf.Buffer{},
	}
	for i := range specs {
		specs[i].Env = append(specs[i].Env, "FAKE_EVENTS="+f.events)
	}
	opts := Options{
		Exe:          os.Args[0],
		RunDir:       f.runDir,
		LogDir:       f.logDir,
		Console:      f.console,
		Logger:       slog.New(slog.NewTextHandler(t.Output(), nil)),
		StartTimeout: 5 * time.Second,
		StopTimeout:  2 * time.Second,
		Backoff:      Backoff{Base: 10 * time.Millisecond, Max: 100 * time.Millisecond},
	}
	if edit != nil {
		edit(&opts)
	}
	sup, err := New(specs, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := sup.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	f.sup = sup
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sup.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return f
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitReady(t *testing.T, f *fixture) {
	t.Helper()
	select {
	case <-f.sup.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("services not ready within 10s: %+v", f.sup.Status())
	}
}

func (f *fixture) service(t *testing.T, name string) ServiceStatus {
	t.Helper()
	for _, s := range f.sup.Status().Services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no service %q in status", name)
	return ServiceStatus{}
}

// eventLines reads the fake services' event file.
func (f *fixture) eventLines(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(f.events)
	if err != nil {
		t.Fatalf("reading events: %v", err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// ringTexts returns the supervisor-stream texts of a service's ring.
func (f *fixture) ringTexts(t *testing.T, name string) []string {
	t.Helper()
	lines, _, err := f.sup.Logs(name, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range lines {
		if l.Stream == StreamSupervisor {
			out = append(out, l.Text)
		}
	}
	return out
}
