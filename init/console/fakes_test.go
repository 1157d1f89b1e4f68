package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln.dev/kiln/internal/syncbuf"
	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/partitions"
	"kiln.dev/kiln/services/config"
)

// Fakes: small real implementations of the console's interfaces that record calls.

var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

type logCall struct {
	Service string
	N       int
	Follow  bool
}

type fakeServices struct {
	st        Status
	statusErr error
	lines     []string // written by Logs
	logErr    error

	// mu guards calls.
	mu    sync.Mutex
	calls []logCall
}

func (f *fakeServices) Status(context.Context) (Status, error) { return f.st, f.statusErr }

func (f *fakeServices) Logs(ctx context.Context, service string, n int, follow bool, w io.Writer) error {
	f.mu.Lock()
	f.calls = append(f.calls, logCall{service, n, follow})
	f.mu.Unlock()
	if f.logErr != nil {
		return f.logErr
	}
	for _, l := range f.lines {
		fmt.Fprintf(w, "%s: %s\n", service, l)
	}
	if follow {
		<-ctx.Done()
	}
	return nil
}

func (f *fakeServices) logCalls() []logCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]logCall(nil), f.calls...)
}

type fakeNet struct {
	ifs []Interface
	err error
}

func (f fakeNet) Interfaces() ([]Interface, error) { return f.ifs, f.err }

type fakeSlots struct {
	slots []Slot
	err   error
	// rolledBack records RollBack's targets.
	rolledBack []partitions.Slot
}

func (f *fakeSlots) Slots(context.Context) ([]Slot, error) { return f.slots, nil }

func (f *fakeSlots) RollBack(_ context.Context, to partitions.Slot) error {
	if f.err != nil {
		return f.err
	}
	f.rolledBack = append(f.rolledBack, to)
	return nil
}

type fakeWiper struct {
	err   error
	calls int
}

func (f *fakeWiper) FormatData(context.Context) error {
	f.calls++
	return f.err
}

type fakePower struct {
	err       error
	reboots   int
	poweroffs int
	// called is closed on the first call, so a test knows the console went quiet.
	called chan struct{}
}

func newFakePower() *fakePower { return &fakePower{called: make(chan struct{})} }

func (f *fakePower) Reboot(context.Context) error {
	f.reboots++
	f.signal()
	return f.err
}

func (f *fakePower) Poweroff(context.Context) error {
	f.poweroffs++
	f.signal()
	return f.err
}

func (f *fakePower) signal() {
	select {
	case <-f.called:
	default:
		close(f.called)
	}
}

type fakeShell struct {
	err   error
	calls int
}

func (f *fakeShell) RunShell(_ context.Context, tty io.ReadWriter) error {
	f.calls++
	fmt.Fprintf(tty, "# (fake shell)\n")
	return f.err
}

// fakes is one set of fakes wired into a Console.
type fakes struct {
	services *fakeServices
	slots    *fakeSlots
	wiper    *fakeWiper
	power    *fakePower
	shell    *fakeShell
}

func newFakes() *fakes {
	return &fakes{
		services: &fakeServices{
			st: Status{Ready: true, Services: []Service{
				{Name: "dhcp", State: "ready", Ready: true, PID: 412, Since: testNow.Add(-5*time.Minute - 3*time.Second)},
				{Name: "dns", State: "backoff", Restarts: 3, Since: testNow.Add(-12 * time.Second), LastExit: "exit status 1"},
			}},
			lines: []string{"line one", "line two"},
		},
		slots: &fakeSlots{slots: []Slot{
			{Name: partitions.SlotA, Entry: "kiln-2.conf", Version: "1.2.0"},
			{Name: partitions.SlotB, Entry: "kiln-1.conf", Version: "1.1.0"},
		}},
		wiper: &fakeWiper{},
		power: newFakePower(),
		shell: &fakeShell{},
	}
}

func (f *fakes) console(t *testing.T) *Console {
	return &Console{
		Hostname:   "lab1",
		Slot:       partitions.SlotA,
		Version:    "1.2.0",
		Management: config.Management{HTTPSPort: 443, HTTPPort: 80},
		Services:   f.services,
		Net: fakeNet{ifs: []Interface{
			{Name: "lo", Up: true, Carrier: true, Loopback: true, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128")}},
			{Name: "eth0", MAC: "52:54:00:12:34:56", Up: true, Carrier: true, Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.2.15/24"), netip.MustParsePrefix("fe80::5054:ff:fe12:3456/64")}},
			{Name: "eth1", MAC: "52:54:00:aa:bb:cc", Up: true},
		}},
		Slots:      f.slots,
		Data:       f.wiper,
		Shell:      f.shell,
		Power:      f.power,
		Logger:     testlog.New(t, slog.LevelInfo),
		Now:        func() time.Time { return testNow },
		RetryDelay: 10 * time.Millisecond,
	}
}

// lineInput plays a terminal in canonical mode: each Read returns at most one
// line (ended by Enter or Ctrl-C) and echoes it to echo, as the tty driver would,
// so screens read like a session. It reports when it first runs out of input,
// i.e. when the console asked for a line after consuming all input (it reads
// only on demand).
type lineInput struct {
	rest string
	echo io.Writer
	eof  chan struct{}
	// hold, if not nil, makes reads past the input wait until it is closed,
	// like a terminal nobody types on.
	hold chan struct{}
	// mu guards rest, reads and closed.
	mu     sync.Mutex
	reads  int
	closed bool
}

func (l *lineInput) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reads++
	if l.rest == "" && l.hold != nil {
		l.mu.Unlock()
		<-l.hold
		l.mu.Lock()
	}
	if l.rest == "" {
		if !l.closed {
			l.closed = true
			close(l.eof)
		}
		return 0, io.EOF
	}
	line := l.rest
	if i := strings.IndexAny(line, "\n\x03"); i >= 0 {
		line = line[:i+1]
	}
	n := copy(p, line)
	l.rest = l.rest[n:]
	io.WriteString(l.echo, strings.ReplaceAll(string(p[:n]), "\x03", "^C"))
	return n, nil
}

func (l *lineInput) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reads
}

type terminal struct {
	io.Reader
	io.Writer
}

// script is a running Console fed from a script.
type script struct {
	in     *lineInput
	out    *syncbuf.Buffer
	cancel context.CancelFunc
	done   chan error
}

// start runs c on a terminal whose input is the given script.
func start(t *testing.T, c *Console, input string) *script {
	t.Helper()
	return startOn(t, c, &lineInput{rest: input})
}

// startHeld is start with a terminal that waits (instead of ending) after the input.
func startHeld(t *testing.T, c *Console, input string) *script {
	t.Helper()
	in := &lineInput{rest: input, hold: make(chan struct{})}
	t.Cleanup(func() { close(in.hold) }) // runs after stop: releases the pending read
	return startOn(t, c, in)
}

func startOn(t *testing.T, c *Console, in *lineInput) *script {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	out := &syncbuf.Buffer{}
	in.echo, in.eof = out, make(chan struct{})
	s := &script{in: in, out: out, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- c.Run(ctx, terminal{s.in, s.out}) }()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// waitOutput waits until the console has written want.
func (s *script) waitOutput(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("console never wrote %q; output:\n%s", want, s.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor waits until ch is closed, failing the test after a bound.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// stop cancels the console and waits for Run to return nil.
func (s *script) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok && err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
		if ok {
			close(s.done)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of its context being cancelled")
	}
}

// run feeds input to c, waits until the console has consumed all of it (or shut
// down, if until is given) and returns everything it wrote.
func run(t *testing.T, c *Console, input string, until ...<-chan struct{}) string {
	t.Helper()
	s := start(t, c, input)
	var done <-chan struct{} = s.in.eof
	if len(until) > 0 {
		done = until[0]
	}
	waitFor(t, done, "the console to consume its input")
	s.stop(t)
	return s.out.String()
}

// after returns what out holds after the last occurrence of marker, to check
// the end of a session.
func after(out, marker string) string {
	i := strings.LastIndex(out, marker)
	if i < 0 {
		return ""
	}
	return out[i+len(marker):]
}

var errTest = errors.New("test failure")
