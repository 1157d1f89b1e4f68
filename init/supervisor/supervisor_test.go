package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/init/reap"
)

func TestDependencyOrder(t *testing.T) {
	delay := "FAKE_READY_DELAY=50ms"
	// Listed backwards on purpose: the supervisor must order them.
	specs := []Spec{
		fake("d", "ready", []string{"b", "c"}, delay),
		fake("c", "ready", []string{"a"}, delay),
		fake("b", "ready", []string{"a"}, delay),
		fake("a", "ready", nil, delay),
	}
	f := start(t, specs, nil)
	waitReady(t, f)

	events := f.eventLines(t)
	at := func(ev string) int {
		i := slices.Index(events, ev)
		if i < 0 {
			t.Fatalf("event %q missing from %q", ev, events)
		}
		return i
	}
	for _, sp := range specs {
		for _, d := range sp.Deps {
			if at(d+" ready") > at(sp.Name+" start") {
				t.Errorf("%s started before its dependency %s was ready: %q", sp.Name, d, events)
			}
		}
	}
	var names []string
	st := f.sup.Status()
	for _, s := range st.Services {
		names = append(names, s.Name)
		if s.State != StateReady || s.PID == 0 || s.StatusText != "serving "+s.Name {
			t.Errorf("service %s = %+v, want ready with a pid and STATUS text", s.Name, s)
		}
	}
	if diff := cmp.Diff([]string{"a", "c", "b", "d"}, names); diff != "" {
		t.Errorf("Status order (-want +got):\n%s", diff)
	}
	if !st.Ready {
		t.Errorf("Status().Ready = false after Ready() fired")
	}
	if got := f.console.String(); got != "kiln: ready\n" {
		t.Errorf("console = %q, want %q", got, "kiln: ready\n")
	}
	if err := f.sup.Healthy(); err != nil {
		t.Errorf("Healthy() = %v, want nil while running", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f.sup.Stop(ctx)
	if err := f.sup.Healthy(); err == nil {
		t.Errorf("Healthy() = nil after Stop, want an error")
	}
}

// PID 1's reaper is what the supervisor runs under inside the image.
var _ Reaper = (*reap.Reaper)(nil)

func TestRestartAfterSIGKILL(t *testing.T) {
	// PID 1's real reaper sweeps orphans all along; it must leave the
	// supervised children's exit status to the supervisor.
	reaper := reap.New(slog.New(slog.NewTextHandler(t.Output(), nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go reaper.Reap(ctx)
	f := start(t, []Spec{fake("a", "ready", nil), fake("b", "ready", nil), fake("c", "ready", []string{"b"})},
		func(o *Options) { o.Reaper = reaper })
	waitReady(t, f)
	before := map[string]int{}
	for _, s := range f.sup.Status().Services {
		before[s.Name] = s.PID
	}
	if err := syscall.Kill(before["b"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b to be ready again", func() bool {
		s := f.service(t, "b")
		return s.State == StateReady && s.PID != before["b"] && s.PID != 0
	})
	b := f.service(t, "b")
	if b.Restarts != 1 || b.LastExit != "killed by SIGKILL" {
		t.Errorf("b: Restarts = %d, LastExit = %q, want 1, %q", b.Restarts, b.LastExit, "killed by SIGKILL")
	}
	for _, name := range []string{"a", "c"} {
		if s := f.service(t, name); s.PID != before[name] || s.Restarts != 0 || s.State != StateReady {
			t.Errorf("%s after b was killed = pid %d restarts %d %s, want pid %d restarts 0 ready", name, s.PID, s.Restarts, s.State, before[name])
		}
	}
	if n := reaper.Reaped(); n != 0 {
		t.Errorf("the reaper reaped %d supervised children as orphans, want 0", n)
	}
}

func TestBackoffAndCrashLoop(t *testing.T) {
	f := start(t, []Spec{fake("ok", "ready", nil), fake("bad", "crash", nil)}, func(o *Options) {
		o.Backoff = Backoff{Base: 10 * time.Millisecond, Max: 80 * time.Millisecond, CrashLoopFailures: 5, CrashLoopWindow: time.Minute}
		o.UnhealthyAfterCrashLoop = 50 * time.Millisecond
	})
	if err := f.sup.Healthy(); err != nil {
		t.Errorf("Healthy() right after Start = %v, want nil", err)
	}
	waitFor(t, 10*time.Second, "bad to crash-loop", func() bool { return f.service(t, "bad").CrashLoop })
	var backoffs []string
	for _, text := range f.ringTexts(t, "bad") {
		if strings.HasPrefix(text, "backoff ") || strings.HasPrefix(text, "crash loop") {
			backoffs = append(backoffs, text)
		}
	}
	want := []string{"backoff 10ms", "backoff 20ms", "backoff 40ms", "backoff 80ms",
		"crash loop: 5 failures within 1m0s; retrying every 80ms"}
	if diff := cmp.Diff(want, backoffs[:min(len(backoffs), len(want))]); diff != "" {
		t.Errorf("backoff events (-want +got):\n%s", diff)
	}
	bad := f.service(t, "bad")
	if bad.LastExit != "exited with code 3" || bad.LastExitTime == nil {
		t.Errorf("bad.LastExit = %q (at %v), want %q", bad.LastExit, bad.LastExitTime, "exited with code 3")
	}
	// It keeps being retried at the max backoff, and says so.
	r := bad.Restarts
	waitFor(t, 5*time.Second, "another retry", func() bool {
		s := f.service(t, "bad")
		return s.Restarts > r && s.CrashLoop && (s.State == StateCrashLoop || s.State == StateStarting)
	})
	if st := f.sup.Status(); st.Ready {
		t.Errorf("Status().Ready = true with a crash-looping service")
	}
	if s := f.service(t, "ok"); s.State != StateReady || s.Restarts != 0 {
		t.Errorf("ok = %s restarts %d, want ready restarts 0", s.State, s.Restarts)
	}
	if got := f.console.String(); got != "" {
		t.Errorf("console = %q, want nothing while a service crash-loops", got)
	}
	waitFor(t, 5*time.Second, "Healthy to fail with UnhealthyAfterCrashLoop", func() bool { return f.sup.Healthy() != nil })
	if err := f.sup.Healthy(); !strings.Contains(err.Error(), "service bad has been crash-looping since") {
		t.Errorf("Healthy() = %v, want it to name the crash-looping service", err)
	}
	// An operator's restart clears the crash loop and starts over at Base.
	n := len(f.ringTexts(t, "bad"))
	if err := f.sup.Restart("bad"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a backoff after the restart", func() bool {
		return slices.ContainsFunc(f.ringTexts(t, "bad")[n:], func(s string) bool { return strings.HasPrefix(s, "backoff") })
	})
	after := f.ringTexts(t, "bad")[n:]
	if i := slices.IndexFunc(after, func(s string) bool { return strings.HasPrefix(s, "backoff") }); after[i] != "backoff 10ms" {
		t.Errorf("first backoff after Restart = %q, want %q (events %q)", after[i], "backoff 10ms", after)
	}
}

func TestStartTimeout(t *testing.T) {
	f := start(t, []Spec{fake("slow", "never-ready", nil)}, func(o *Options) {
		o.StartTimeout = 300 * time.Millisecond
		o.Backoff = Backoff{Base: time.Minute}
	})
	waitFor(t, 5*time.Second, "slow to be given up on", func() bool { return f.service(t, "slow").State == StateBackoff })
	if s := f.service(t, "slow"); s.LastExit != "not ready within 300ms" || s.PID != 0 {
		t.Errorf("slow = LastExit %q pid %d, want %q pid 0", s.LastExit, s.PID, "not ready within 300ms")
	}
	if diff := cmp.Diff([]string{"slow start", "slow term"}, f.eventLines(t)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestStopOrderAndKillDeadline(t *testing.T) {
	f := start(t, []Spec{
		fake("a", "ready", nil),
		fake("b", "ready", []string{"a"}),
		fake("c", "ready", []string{"b"}),
		fake("stubborn", "ignore-term", []string{"a"}),
	}, func(o *Options) { o.StopTimeout = 300 * time.Millisecond })
	waitReady(t, f)
	var pids []int
	for _, s := range f.sup.Status().Services {
		pids = append(pids, s.PID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	began := time.Now()
	if err := f.sup.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	took := time.Since(began)
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("Stop took %s, want about the 300ms kill deadline", took)
	}
	var terms []string
	for _, ev := range f.eventLines(t) {
		if name, ok := strings.CutSuffix(ev, " term"); ok {
			terms = append(terms, name)
		}
	}
	if diff := cmp.Diff([]string{"c", "b", "a"}, terms); diff != "" {
		t.Errorf("SIGTERM order (-want +got):\n%s", diff)
	}
	texts := f.ringTexts(t, "stubborn")
	for _, want := range []string{"still running 300ms after SIGTERM; sending SIGKILL", "killed by SIGKILL"} {
		if !slices.Contains(texts, want) {
			t.Errorf("stubborn's events %q lack %q", texts, want)
		}
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after Stop (kill 0: %v)", pid, err)
		}
	}
	for _, s := range f.sup.Status().Services {
		if s.State != StateStopped {
			t.Errorf("%s state after Stop = %s, want stopped", s.Name, s.State)
		}
	}
	if _, err := os.Stat(SocketPath(f.runDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket left behind after Stop: %v", err)
	}
}

func TestStopDeadlineFromContext(t *testing.T) {
	f := start(t, []Spec{fake("stubborn", "ignore-term", nil)}, func(o *Options) { o.StopTimeout = time.Minute })
	waitReady(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	if err := f.sup.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("Stop with a 200ms context took %s", took)
	}
}

func TestLogsRingAndRotation(t *testing.T) {
	f := start(t, []Spec{fake("spam", "spam", nil, "FAKE_LINES=200")}, func(o *Options) {
		o.LogMaxBytes = 4096
		o.LogFiles = 3
		o.RingLines = 50
	})
	waitReady(t, f)
	c := NewClient(SocketPath(f.runDir))
	ctx := context.Background()
	var lines []Line
	waitFor(t, 5*time.Second, "the last spam line", func() bool {
		var err error
		lines, err = c.Logs(ctx, "spam", 0)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(lines, func(l Line) bool { return strings.HasPrefix(l.Text, "line 199 ") })
	})
	if len(lines) != 50 {
		t.Errorf("ring holds %d lines, want 50", len(lines))
	}
	for i := 1; i < len(lines); i++ {
		if lines[i].Seq != lines[i-1].Seq+1 {
			t.Fatalf("seq %d follows %d", lines[i].Seq, lines[i-1].Seq)
		}
	}
	last := lines[len(lines)-1].Seq
	tail, err := c.Logs(ctx, "spam", last-5)
	if err != nil {
		t.Fatal(err)
	}
	if len(tail) != 5 || tail[0].Seq != last-4 {
		t.Errorf("Logs(since=%d) = %d lines from seq %d, want 5 from %d", last-5, len(tail), tail[0].Seq, last-4)
	}

	for _, name := range []string{"spam.log", "spam.log.1", "spam.log.2"} {
		fi, err := os.Stat(filepath.Join(f.logDir, name))
		if err != nil {
			t.Errorf("rotated file: %v", err)
			continue
		}
		if fi.Size() > 4096 {
			t.Errorf("%s is %d bytes, want at most 4096", name, fi.Size())
		}
	}
	if _, err := os.Stat(filepath.Join(f.logDir, "spam.log.3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spam.log.3 exists (err %v), want only 3 files", err)
	}
	cur, err := os.ReadFile(filepath.Join(f.logDir, "spam.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cur), "[stdout] line 199 ") {
		t.Errorf("spam.log lacks the last line:\n%s", cur)
	}
	first, err := c.Logs(ctx, "spam", 0)
	if err != nil {
		t.Fatal(err)
	}
	if first[0].Seq <= 1 {
		t.Errorf("oldest ring line has seq %d, want the first ones dropped", first[0].Seq)
	}
}

func TestControlSocket(t *testing.T) {
	f := start(t, []Spec{fake("web", "ready", nil), {Name: "off", Args: []string{"fake", "off"}}}, nil)
	waitReady(t, f)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", SocketPath(f.runDir))
	}}, Timeout: 5 * time.Second}

	resp, err := hc.Get("http://supervisor/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	err = json.NewDecoder(resp.Body).Decode(&raw)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	svcs := raw["services"].([]any)
	web, off := svcs[0].(map[string]any), svcs[1].(map[string]any)
	if raw["ready"] != true || web["name"] != "web" || web["state"] != "ready" || web["pid"] == nil || web["status_text"] != "serving web" {
		t.Errorf("GET /v1/status = %v, want ready with web ready, a pid and its STATUS text", raw)
	}
	if off["state"] != "stopped" || off["enabled"] != false {
		t.Errorf("disabled service in status = %v, want stopped and not enabled", off)
	}

	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"POST", "/v1/services/nope/restart", http.StatusNotFound},
		{"POST", "/v1/services/off/restart", http.StatusConflict},
		{"GET", "/v1/logs/nope", http.StatusNotFound},
		{"GET", "/v1/logs/web?since=x", http.StatusBadRequest},
		{"GET", "/v1/logs/web?since=0", http.StatusOK},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://supervisor"+tc.path, nil)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
			}
		})
	}

	c := NewClient(SocketPath(f.runDir))
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldPID := st.Services[0].PID
	// stdout and stderr are read by separate goroutines, so a line may
	// land a moment after readiness: wait for all of them, bounded.
	wants := []string{"stdout: hello stdout from web", "stderr: hello stderr from web", "supervisor: ready", fmt.Sprintf("supervisor: started pid %d", oldPID)}
	var lines []Line
	var streams []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if lines, err = c.Logs(ctx, "web", 0); err != nil {
			t.Fatal(err)
		}
		streams = streams[:0]
		for _, l := range lines {
			streams = append(streams, l.Stream+": "+l.Text)
		}
		if containsAll(streams, wants) || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range wants {
		if !slices.Contains(streams, want) {
			t.Errorf("logs %q lack %q", streams, want)
		}
	}

	// A follower sees lines as they come.
	followCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(followCtx, "GET", fmt.Sprintf("http://supervisor/v1/logs/web?follow=1&since=%d", lines[len(lines)-1].Seq), nil)
	fresp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer fresp.Body.Close()

	if err := c.Restart(ctx, "web"); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	dec := json.NewDecoder(fresp.Body)
	var l Line
	if err := dec.Decode(&l); err != nil {
		t.Fatalf("reading followed logs: %v", err)
	}
	if l.Text != "restart requested" {
		t.Errorf("first followed line = %q, want %q", l.Text, "restart requested")
	}
	waitFor(t, 5*time.Second, "web to restart", func() bool {
		s := f.service(t, "web")
		return s.State == StateReady && s.PID != oldPID && s.PID != 0
	})
	if s := f.service(t, "web"); s.Restarts != 1 || s.LastExit != "exited with code 0" {
		t.Errorf("web after restart: Restarts %d LastExit %q, want 1 %q", s.Restarts, s.LastExit, "exited with code 0")
	}

	// Client.FollowLogs replays from since and stops when fn returns an error.
	errEnough := fmt.Errorf("enough")
	var seen []string
	err = c.FollowLogs(followCtx, "web", 0, func(l Line) error {
		seen = append(seen, l.Text)
		if l.Text == "restart requested" {
			return errEnough
		}
		return nil
	})
	if err != errEnough || !slices.Contains(seen, "hello stdout from web") {
		t.Errorf("FollowLogs = %v after %q, want errEnough after the first lines", err, seen)
	}
}

func TestNewRejectsBadSpecs(t *testing.T) {
	on := func(name string, deps ...string) Spec { return Spec{Name: name, Deps: deps, Enabled: true} }
	for _, tc := range []struct {
		name  string
		specs []Spec
		want  string
	}{
		{"bad name", []Spec{on("Web")}, `service name "Web"`},
		{"duplicate", []Spec{on("a"), on("a")}, `"a" is listed twice`},
		{"unknown dep", []Spec{on("a", "b")}, `"a" depends on "b", which does not exist`},
		{"self", []Spec{on("a", "a")}, `"a" depends on itself`},
		{"cycle", []Spec{on("a", "c"), on("b", "a"), on("c", "b"), on("d")}, "cycle among a, b, c"},
		{"disabled dep", []Spec{{Name: "store"}, on("dhcp", "store")}, `"dhcp" needs "store", which is disabled (enable store or disable dhcp)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.specs, Options{RunDir: t.TempDir()})
			if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New(%s) = %v, want ErrSpec containing %q", tc.name, err, tc.want)
			}
		})
	}
	long := "/" + strings.Repeat("r", 100)
	if _, err := New([]Spec{on("a")}, Options{RunDir: long}); err == nil || !strings.Contains(err.Error(), "too long for unix sockets") {
		t.Errorf("New with a %d-byte run dir = %v, want a too-long error", len(long), err)
	}
}

func TestWatchdog(t *testing.T) {
	pinger, silent := fake("pinger", "ready", nil, "FAKE_PING=1"), fake("silent", "ready", nil)
	pinger.Watchdog, silent.Watchdog = 300*time.Millisecond, 300*time.Millisecond
	f := start(t, []Spec{pinger, silent}, func(o *Options) { o.Backoff = Backoff{Base: time.Minute} })
	waitFor(t, 5*time.Second, "silent to miss its watchdog", func() bool { return f.service(t, "silent").LastExit != "" })
	if s := f.service(t, "silent"); s.LastExit != "no WATCHDOG=1 within 300ms" {
		t.Errorf("silent.LastExit = %q, want %q", s.LastExit, "no WATCHDOG=1 within 300ms")
	}
	time.Sleep(400 * time.Millisecond)
	if s := f.service(t, "pinger"); s.State != StateReady || s.Restarts != 0 || s.LastExit != "" {
		t.Errorf("pinger = %s restarts %d last exit %q, want ready and never restarted", s.State, s.Restarts, s.LastExit)
	}
}

func TestWriteLogs(t *testing.T) {
	f := start(t, []Spec{fake("web", "ready", nil)}, nil)
	waitReady(t, f)
	waitFor(t, 5*time.Second, "web's output", func() bool {
		lines, _, _ := f.sup.Logs("web", 0)
		return len(lines) >= 4 // started, stdout, stderr, ready
	})
	var b strings.Builder
	if err := f.sup.WriteLogs(context.Background(), "web", 1, false, &b); err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSpace(b.String()), "\n"); len(got) != 1 {
		t.Errorf("WriteLogs(n=1) wrote %q, want one line", got)
	}

	// Following: the last n lines, then new ones as they come; ctx ends it.
	sink := f.sup.byName["web"].sink
	sink.event("before")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- f.sup.WriteLogs(ctx, "web", 1, true, pw); pw.Close() }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l := <-lines:
			return l
		case <-time.After(5 * time.Second):
			t.Fatal("no followed line within 5s")
			return ""
		}
	}
	if l := next(); !strings.HasSuffix(l, "[supervisor] before") {
		t.Errorf("first followed line = %q, want the last line so far (before)", l)
	}
	sink.event("after")
	if l := next(); !strings.HasSuffix(l, "[supervisor] after") {
		t.Errorf("second followed line = %q, want the new one (after)", l)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("WriteLogs after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WriteLogs did not return after cancel")
	}
	if _, _, err := f.sup.Logs("nope", 0); !errors.Is(err, ErrUnknownService) {
		t.Errorf("Logs(nope) = %v, want ErrUnknownService", err)
	}
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
