package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"kiln.dev/kiln/partitions"
	"kiln.dev/kiln/services/config"
)

// Defaults for the zero values of Console's tuning fields.
const (
	DefaultLogLines   = 50
	DefaultRetryDelay = time.Second
	// maxRetryDelay caps the wait between reads of a terminal that keeps
	// reporting end of input.
	maxRetryDelay = time.Minute
	// callTimeout bounds each query (status, slots, logs without follow), so a
	// wedged supervisor cannot freeze the recovery console.
	callTimeout = 5 * time.Second
)

var (
	// errShutdown means a reboot or power off is under way: the console goes quiet.
	errShutdown = errors.New("shutting down")
	// errNotAvailable means the Console was built without what a menu item needs.
	errNotAvailable = errors.New("not available on this system")
)

// Console is the recovery console's configuration. Its fields are read-only
// while Run is running, so one Console can serve several terminals at once.
type Console struct {
	// Hostname, Slot (the running slot) and Version are shown in the banner.
	Hostname string
	Slot     partitions.Slot
	Version  string
	// Live says the system runs from the live ISO: the banner says so instead
	// of a slot, since nothing done here survives a power-off.
	Live bool
	// Management gives the scheme and port of the management URLs in the banner.
	Management config.Management

	// What the menu items act on. A nil field makes its items say
	// "not available on this system".
	Services StatusSource    // status (1), logs (3), readiness in the banner
	Net      InterfaceLister // addresses (2), URLs in the banner
	Slots    SlotController  // roll back (4)
	Data     DataWiper       // factory reset (5)
	Shell    ShellRunner     // shell (6)
	Power    Power           // reboot (7), power off (8), after roll back and reset
	Login    LoginInfo       // certificate fingerprint and first-boot password in the banner
	Install  Installer       // install to disk (9): set on a live system only, the item shows then

	// Logger records what the operator did (roll back, reset, reboot…); nil discards.
	Logger *slog.Logger
	// Now is the clock for "since" columns; nil means time.Now.
	Now func() time.Time
	// LogLines is how many lines the logs item shows; 0 means DefaultLogLines.
	LogLines int
	// RetryDelay is the first wait after the terminal reports end of input; it
	// doubles on each further end of input up to a minute. 0 means DefaultRetryDelay.
	RetryDelay time.Duration
}

// Run shows the banner on tty and serves the recovery menu until ctx is done;
// it then returns nil. End of input never ends Run: it waits quietly and reads
// again. If tty has SetReadDeadline (an *os.File or *TTY), Run uses it on return
// to release its pending read, so the caller can close tty afterwards.
func (c *Console) Run(ctx context.Context, tty io.ReadWriter) error {
	if d, ok := tty.(interface{ SetReadDeadline(time.Time) error }); ok {
		_ = d.SetReadDeadline(time.Time{})
		defer func() { _ = d.SetReadDeadline(time.Now()) }()
	}
	s := &session{c: c, tty: tty, out: tty, in: newLineReader(tty)}
	defer s.in.close()
	s.run(ctx)
	return nil
}

// session is one Run: the terminal and its reader.
type session struct {
	c   *Console
	tty io.ReadWriter
	out io.Writer
	in  *lineReader
	// reopenFailing is set while reopening the terminal fails, to log it once.
	reopenFailing bool
}

func (s *session) logger() *slog.Logger {
	l := s.c.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return l.With("component", "console")
}

func (s *session) now() time.Time {
	if s.c.Now != nil {
		return s.c.Now()
	}
	return time.Now()
}

func (s *session) printf(format string, args ...any) { fmt.Fprintf(s.out, format, args...) }

// run alternates between the banner's quiet wait and the menu until ctx is done.
func (s *session) run(ctx context.Context) {
	s.banner(ctx)
	for {
		_, err := s.in.readLine(ctx) // the banner's "press Enter"
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errNoInput):
			s.idle(ctx)
			continue
		case errors.Is(err, errInterrupt):
			s.printf("\n")
			continue
		}
		err = s.menu(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errShutdown):
			<-ctx.Done()
			return
		case errors.Is(err, errNoInput):
			s.idle(ctx)
		default: // the operator left the menu
			s.banner(ctx)
		}
	}
}

// idle waits before the next read of a terminal that gave no input, longer after
// each consecutive failure, so a hung-up or closed terminal costs nothing. A
// terminal that can be reopened is reopened after the wait: a hung-up file never
// reads again, a fresh one does (an operator's Ctrl-D costs a harmless reopen).
func (s *session) idle(ctx context.Context) {
	d := s.c.RetryDelay
	if d <= 0 {
		d = DefaultRetryDelay
	}
	for i := 1; i < s.in.failures && d < maxRetryDelay; i++ {
		d *= 2
	}
	d = min(d, maxRetryDelay)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		s.reopen() // no read is pending: the last one ended in errNoInput
	case <-ctx.Done():
	}
}

// reopen reopens the terminal if it can be reopened, and reports whether the
// terminal is usable. The caller must have no read pending. Only the first
// failure in a row is logged: a terminal that stays gone stays quiet.
func (s *session) reopen() bool {
	r, ok := s.tty.(reopener)
	if !ok {
		return true
	}
	err := r.Reopen()
	if err != nil && !s.reopenFailing {
		s.logger().Warn("cannot reopen the terminal; retrying while idle", "err", err)
	}
	s.reopenFailing = err != nil
	return err == nil
}

// item is one menu entry.
type item struct {
	key   string
	title string
	run   func(s *session, ctx context.Context) error
}

var baseItems = []item{
	{"1", "status", (*session).status},
	{"2", "addresses", (*session).addresses},
	{"3", "service logs", (*session).logs},
	{"4", "roll back to the other slot", (*session).rollBack},
	{"5", "factory reset (erase the data partition)", (*session).factoryReset},
	{"6", "shell", (*session).shell},
	{"7", "reboot", (*session).reboot},
	{"8", "power off", (*session).poweroff},
}

// installItem is shown when the Console has an Installer (a live system).
var installItem = item{"9", "install kiln to a disk", (*session).install}

// items are the menu's entries on this Console.
func (c *Console) items() []item {
	if c.Install == nil {
		return baseItems
	}
	return append(baseItems[:len(baseItems):len(baseItems)], installItem)
}

func (s *session) printMenu() {
	s.printf("\nkiln recovery menu (%s)\n", s.c.hostname())
	for _, it := range s.c.items() {
		s.printf("  %s  %s\n", it.key, it.title)
	}
	s.printf("  q  leave the menu\n")
}

// menu runs menu items until the operator leaves (nil) or an item ends the
// session (errNoInput, errShutdown, ctx).
func (s *session) menu(ctx context.Context) error {
	s.printMenu()
	last := s.c.items()[len(s.c.items())-1].key
	for {
		choice, err := s.ask(ctx, "choice [1-"+last+", q]: ")
		switch {
		case errors.Is(err, errInterrupt):
			continue
		case err != nil:
			return err
		}
		choice = strings.TrimSpace(choice)
		switch strings.ToLower(choice) {
		case "":
			s.printMenu()
			continue
		case "q", "quit", "exit":
			return nil
		}
		it, ok := s.c.lookupItem(choice)
		if !ok {
			s.printf("%q is not a menu choice: type a number from 1 to %s and press Enter, or q to leave the menu.\n", choice, last)
			continue
		}
		err = s.safely(func() error { return it.run(s, ctx) })
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errNoInput), errors.Is(err, errShutdown):
			return err
		case errors.Is(err, errInterrupt):
			s.printf("cancelled.\n")
		case err != nil:
			s.printf("error: %v\n", err)
		}
		s.printMenu()
	}
}

// safely runs fn and turns a panic into an error (the stack goes to the log):
// the console runs inside PID 1, where a panic would panic the kernel.
func (s *session) safely(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.logger().Error("recovered from a panic", "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error (please report it): %v", r)
		}
	}()
	return fn()
}

func (c *Console) lookupItem(key string) (item, bool) {
	for _, it := range c.items() {
		if it.key == key {
			return it, true
		}
	}
	return item{}, false
}

// ask prints a prompt and returns the line typed, without its line ending.
func (s *session) ask(ctx context.Context, prompt string) (string, error) {
	s.printf("%s", prompt)
	line, err := s.in.readLine(ctx)
	if errors.Is(err, errInterrupt) {
		s.printf("\n")
	}
	return line, err
}

// confirm asks a y/N question; anything but y/yes/n/no/empty asks again.
func (s *session) confirm(ctx context.Context, question string) (bool, error) {
	for {
		a, err := s.ask(ctx, question+" [y/N]: ")
		if errors.Is(err, errInterrupt) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		switch strings.ToLower(strings.TrimSpace(a)) {
		case "y", "yes":
			return true, nil
		case "", "n", "no":
			return false, nil
		}
		s.printf("please answer y or n.\n")
	}
}

// hostname is the hostname to show; "kiln" when none is set.
func (c *Console) hostname() string {
	if c.Hostname == "" {
		return "kiln"
	}
	return c.Hostname
}

// query returns a context for one bounded query.
func query(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, callTimeout)
}
