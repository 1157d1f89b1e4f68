package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"kiln.dev/kiln/internal/atomicfile"
)

// ErrNotInstalled means QEMU or the firmware is missing on this host.
var ErrNotInstalled = errors.New("not installed")

// Available reports whether the emulator and, for UEFI, OVMF are installed, with
// an error naming the Debian package to install.
func Available(c Config) error {
	c = c.withDefaults()
	if _, err := exec.LookPath(c.Binary); err != nil {
		return fmt.Errorf("%s %w: apt-get install qemu-system-x86", c.Binary, ErrNotInstalled)
	}
	if c.Firmware == UEFI {
		for _, f := range []string{c.OVMFCode, c.OVMFVars} {
			if _, err := os.Stat(f); err != nil {
				return fmt.Errorf("OVMF firmware %s %w: apt-get install ovmf", f, ErrNotInstalled)
			}
		}
	}
	return nil
}

// Options are the run-time companions of a Config.
type Options struct {
	// Logger receives the launcher's own messages (command line, exit); a
	// discarding logger if nil.
	Logger *slog.Logger
	// Console, if set, receives a copy of the raw serial output as it arrives
	// (kiln vm run passes the terminal).
	Console io.Writer
	// StartTimeout bounds how long QEMU may take to connect its serial port and
	// QMP monitor; 30s if zero.
	StartTimeout time.Duration
	// AnswerCursorQueries makes the launcher answer the guest's cursor
	// position queries (ESC [ 6 n) on the serial console as a 80x24 terminal
	// would. Line editors such as the recovery shell's query the terminal and
	// wait seconds for an answer that a plain pipe never gives. Leave it off
	// when a real terminal is attached (it answers itself).
	AnswerCursorQueries bool
}

// VM is a running QEMU. Its methods are safe for concurrent use.
type VM struct {
	cfg     Config
	log     *slog.Logger
	cmd     *exec.Cmd
	started time.Time
	con     *console
	qmp     *QMP
	serial  net.Conn
	sockDir string
	logFile *os.File
	stderr  *tailBuffer

	// httpsPort and httpPort are the resolved management forwards (0 if none).
	httpsPort, httpPort int

	// exited is closed once QEMU has exited and the console has drained;
	// waitErr is QEMU's exit status, set before exited is closed.
	exited  chan struct{}
	waitErr error

	closeOnce sync.Once
	// serialMu serialises writes to the serial port.
	serialMu sync.Mutex
}

// Start launches QEMU for cfg and returns once QEMU has connected its serial
// console and QMP monitor, that is, before the guest runs. The VM is killed
// when ctx is done; call Close when finished with it in any case.
func Start(ctx context.Context, cfg Config, opt Options) (*VM, error) {
	cfg = cfg.withDefaults()
	if err := Available(cfg); err != nil {
		return nil, err
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.StartTimeout == 0 {
		opt.StartTimeout = 30 * time.Second
	}
	if cfg.WorkDir == "" {
		return nil, fmt.Errorf("%w: WorkDir is empty: give the VM a directory for its vars and serial log", ErrConfig)
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating VM work dir: %w", err)
	}
	if cfg.Firmware == UEFI {
		if err := copyIfMissing(cfg.OVMFVars, cfg.varsPath()); err != nil {
			return nil, fmt.Errorf("copying OVMF vars: %w", err)
		}
	}
	// Picked ports may be taken between picking and QEMU binding them: retry.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		c := cfg
		picked := false
		if cfg.Mgmt != nil {
			m := *cfg.Mgmt
			for _, p := range []*int{&m.HTTPSPort, &m.HTTPPort} {
				if *p == 0 {
					port, err := FreeTCPPort()
					if err != nil {
						return nil, err
					}
					*p, picked = port, true
				}
			}
			c.Mgmt = &m
		}
		vm, err := start(ctx, c, opt)
		if err == nil {
			return vm, nil
		}
		lastErr = err
		if !picked || !strings.Contains(err.Error(), "host forwarding") {
			break
		}
	}
	return nil, lastErr
}

func start(ctx context.Context, cfg Config, opt Options) (_ *VM, err error) {
	vm := &VM{cfg: cfg, log: opt.Logger, con: newConsole(), exited: make(chan struct{}), stderr: &tailBuffer{max: 64 << 10}}
	if cfg.Mgmt != nil {
		vm.httpsPort, vm.httpPort = max(cfg.Mgmt.HTTPSPort, 0), max(cfg.Mgmt.HTTPPort, 0)
	}
	// Unix socket paths are limited to 108 bytes: keep them in a short temp dir.
	if vm.sockDir, err = os.MkdirTemp("", "kiln-vm-"); err != nil {
		return nil, fmt.Errorf("creating socket dir: %w", err)
	}
	var cleanups []func()
	defer func() {
		if err != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
			os.RemoveAll(vm.sockDir)
		}
	}()
	serialPath, qmpPath := filepath.Join(vm.sockDir, "serial"), filepath.Join(vm.sockDir, "qmp")
	serialL, err := net.Listen("unix", serialPath)
	if err != nil {
		return nil, fmt.Errorf("listening for the serial console: %w", err)
	}
	defer serialL.Close()
	qmpL, err := net.Listen("unix", qmpPath)
	if err != nil {
		return nil, fmt.Errorf("listening for QMP: %w", err)
	}
	defer qmpL.Close()

	args, err := Args(cfg, serialPath, qmpPath)
	if err != nil {
		return nil, err
	}
	if cfg.SerialLog != "" {
		if vm.logFile, err = os.Create(cfg.SerialLog); err != nil {
			return nil, fmt.Errorf("creating serial log: %w", err)
		}
		cleanups = append(cleanups, func() { vm.logFile.Close() })
	}

	vm.cmd = exec.Command(cfg.Binary, args...)
	vm.cmd.Stdout = vm.stderr
	vm.cmd.Stderr = vm.stderr
	// Own process group so Close kills QEMU and anything it forked; SIGKILL if
	// the launcher dies first.
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	vm.log.Info("starting QEMU", "cmd", cfg.Binary+" "+strings.Join(args, " "))
	if err := vm.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", cfg.Binary, err)
	}
	vm.started = time.Now()
	procDone := make(chan struct{})
	go func() {
		vm.waitErr = vm.cmd.Wait()
		close(procDone)
	}()
	cleanups = append(cleanups, func() {
		vm.kill()
		<-procDone
	})

	// QEMU connects the serial chardev, then the QMP chardev, while it
	// initialises; it exits if a connection fails.
	serialC, qmpC, err := acceptBoth(serialL, qmpL, procDone, opt.StartTimeout)
	// exitedEarly explains a failure by QEMU's own message when QEMU exited.
	exitedEarly := func(err error) error {
		select {
		case <-procDone:
			return fmt.Errorf("QEMU exited while starting (%v): %s", vm.waitErr, strings.TrimSpace(vm.stderr.String()))
		case <-time.After(time.Second):
			return err
		}
	}
	if err != nil {
		return nil, exitedEarly(fmt.Errorf("waiting for QEMU to connect its serial and QMP sockets: %w", err))
	}
	vm.serial = serialC
	cleanups = append(cleanups, func() { serialC.Close(); qmpC.Close() })
	readerDone := make(chan struct{})
	go vm.readSerial(serialC, opt.Console, opt.AnswerCursorQueries, readerDone)

	hctx, cancel := context.WithTimeout(ctx, opt.StartTimeout)
	vm.qmp, err = NewQMP(hctx, qmpC)
	cancel()
	if err != nil {
		return nil, exitedEarly(fmt.Errorf("QMP handshake: %w", err))
	}

	go func() {
		<-procDone
		// QEMU closed its end; give the reader a moment to drain, then force it.
		select {
		case <-readerDone:
		case <-time.After(2 * time.Second):
			serialC.Close()
			<-readerDone
		}
		vm.con.end(vm.waitErr)
		vm.log.Info("QEMU exited", "status", vm.waitErr)
		close(vm.exited)
	}()
	go func() {
		select {
		case <-ctx.Done():
			vm.Close()
		case <-vm.exited:
		}
	}()
	return vm, nil
}

// acceptBoth accepts one connection on each listener, giving up when QEMU exits
// or the timeout passes.
func acceptBoth(a, b net.Listener, procDone <-chan struct{}, timeout time.Duration) (net.Conn, net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	deadline := time.Now().Add(timeout)
	accept := func(l net.Listener, ch chan<- res) {
		l.(*net.UnixListener).SetDeadline(deadline)
		c, err := l.Accept()
		ch <- res{c, err}
	}
	ca, cb := make(chan res, 1), make(chan res, 1)
	go accept(a, ca)
	go accept(b, cb)
	var ra, rb *res
	for ra == nil || rb == nil {
		select {
		case r := <-ca:
			ra = &r
		case r := <-cb:
			rb = &r
		case <-procDone:
			a.Close()
			b.Close()
			procDone = nil
		}
		if (ra != nil && ra.err != nil) || (rb != nil && rb.err != nil) {
			a.Close()
			b.Close()
			for ra == nil || rb == nil { // collect the other goroutine
				select {
				case r := <-ca:
					ra = &r
				case r := <-cb:
					rb = &r
				}
			}
			for _, r := range []*res{ra, rb} {
				if r.c != nil {
					r.c.Close()
				}
			}
			return nil, nil, errors.Join(ra.err, rb.err)
		}
	}
	return ra.c, rb.c, nil
}

// cursorQuery is the terminal's Device Status Report request for the cursor
// position, and cursorReport an answer to it.
var cursorQuery, cursorReport = []byte("\x1b[6n"), []byte("\x1b[1;1R")

// countQueries counts the cursor queries in chunk, including one split
// between the previous chunk's tail (carry) and chunk, and returns the tail
// to carry into the next call.
func countQueries(carry, chunk []byte) (int, []byte) {
	window := append(append([]byte(nil), carry...), chunk...)
	n := bytes.Count(window, cursorQuery)
	tail := window[max(0, len(window)-len(cursorQuery)+1):]
	if bytes.HasSuffix(window, cursorQuery) {
		tail = nil // counted already
	}
	return n, append([]byte(nil), tail...)
}

func (vm *VM) readSerial(c net.Conn, tee io.Writer, answer bool, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 32<<10)
	var carry []byte // the end of the previous chunk, for queries split across reads
	for {
		n, err := c.Read(buf)
		if n > 0 {
			now := time.Now()
			if vm.logFile != nil {
				vm.logFile.Write(buf[:n])
			}
			if tee != nil {
				tee.Write(buf[:n])
			}
			vm.con.write(buf[:n], now)
			if answer {
				var queries int
				queries, carry = countQueries(carry, buf[:n])
				for ; queries > 0; queries-- {
					vm.Write(cursorReport)
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// Started is when QEMU was started.
func (vm *VM) Started() time.Time { return vm.started }

// HTTPSPort and HTTPPort are the host ports on 127.0.0.1 forwarded to the
// guest's 443 and 80 (0 without a management NIC).
func (vm *VM) HTTPSPort() int { return vm.httpsPort }

// HTTPPort is the host port forwarded to the guest's port 80.
func (vm *VM) HTTPPort() int { return vm.httpPort }

// WorkDir is the VM's work directory.
func (vm *VM) WorkDir() string { return vm.cfg.WorkDir }

// QMP is the VM's monitor connection.
func (vm *VM) QMP() *QMP { return vm.qmp }

// Expect waits until the serial console shows a line matching re, starting
// where the previous successful Expect stopped, and returns that line. It
// fails with ErrTimeout after timeout, with ErrExited if QEMU exits first, or
// with ctx's error; the error holds the last 40 console lines.
func (vm *VM) Expect(ctx context.Context, re *regexp.Regexp, timeout time.Duration) (string, error) {
	l, err := vm.con.expect(ctx, re, timeout)
	return l.Text, err
}

// FailOn makes Expect fail with ErrFailLine as soon as a complete console
// line matching one of res appears before the expected text (for example a
// kernel panic), instead of waiting for the timeout. It replaces earlier
// patterns; no arguments clears them.
func (vm *VM) FailOn(res ...*regexp.Regexp) { vm.con.setFailOn(res) }

// ExpectLine is Expect returning the line with its arrival time.
func (vm *VM) ExpectLine(ctx context.Context, re *regexp.Regexp, timeout time.Duration) (Line, error) {
	return vm.con.expect(ctx, re, timeout)
}

// WaitQuiet waits until the serial console has been silent for d (for a
// program that redraws its screen before it reads input), at most timeout.
func (vm *VM) WaitQuiet(ctx context.Context, d, timeout time.Duration) error {
	return vm.con.quiet(ctx, d, timeout)
}

// Lines returns the console output so far (the newest 50000+ lines at most).
func (vm *VM) Lines() []Line { return vm.con.snapshot() }

// ConsoleTail formats the last console lines, for error messages.
func (vm *VM) ConsoleTail() string { return vm.con.tailText() }

// SendSerial types s on the serial console.
func (vm *VM) SendSerial(s string) error {
	_, err := vm.Write([]byte(s))
	return err
}

// Write sends raw bytes to the serial console.
func (vm *VM) Write(p []byte) (int, error) {
	vm.serialMu.Lock()
	defer vm.serialMu.Unlock()
	vm.serial.SetWriteDeadline(time.Now().Add(10 * time.Second))
	n, err := vm.serial.Write(p)
	if err != nil {
		return n, fmt.Errorf("writing to the serial console: %w", err)
	}
	return n, nil
}

// Powerdown presses the ACPI power button (QMP system_powerdown).
func (vm *VM) Powerdown(ctx context.Context) error {
	return vm.qmp.Execute(ctx, "system_powerdown", nil, nil)
}

// Reset is a hard reset (QMP system_reset), like the reset button.
func (vm *VM) Reset(ctx context.Context) error { return vm.qmp.Execute(ctx, "system_reset", nil, nil) }

// Quit stops QEMU at once (QMP quit), like pulling the power cord.
func (vm *VM) Quit(ctx context.Context) error {
	err := vm.qmp.Execute(ctx, "quit", nil, nil)
	if errors.Is(err, ErrQMPClosed) { // QEMU may close before it answers
		return nil
	}
	return err
}

// Status returns QEMU's run state ("running", "shutdown", "paused", …).
func (vm *VM) Status(ctx context.Context) (string, error) {
	var st struct {
		Status string `json:"status"`
	}
	if err := vm.qmp.Execute(ctx, "query-status", nil, &st); err != nil {
		return "", err
	}
	return st.Status, nil
}

// Exited is closed once QEMU has exited and its console output is drained.
func (vm *VM) Exited() <-chan struct{} { return vm.exited }

// Wait waits for QEMU to exit and returns its exit status (nil for a clean
// exit, as after a guest poweroff).
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.exited:
		return vm.waitErr
	case <-ctx.Done():
		return fmt.Errorf("waiting for QEMU to exit: %w", ctx.Err())
	}
}

// Shutdown presses the power button and waits for the guest to power off
// until ctx is done; then it stops QEMU by force and returns an error.
func (vm *VM) Shutdown(ctx context.Context) error {
	if err := vm.Powerdown(ctx); err != nil {
		vm.Close()
		return fmt.Errorf("pressing the power button: %w", err)
	}
	if err := vm.Wait(ctx); err != nil {
		vm.Close()
		return fmt.Errorf("guest did not power off: %w\n%s", err, vm.ConsoleTail())
	}
	return nil
}

// Close stops QEMU if it still runs (QMP quit, then SIGKILL to its process
// group), waits for it and releases the VM's sockets and files. It is safe to
// call more than once.
func (vm *VM) Close() error {
	vm.closeOnce.Do(func() {
		select {
		case <-vm.exited:
		default:
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			vm.Quit(ctx)
			cancel()
			select {
			case <-vm.exited:
			case <-time.After(3 * time.Second):
				vm.kill()
				<-vm.exited
			}
		}
		vm.qmp.Close()
		vm.serial.Close()
		if vm.logFile != nil {
			vm.logFile.Close()
		}
		os.RemoveAll(vm.sockDir)
	})
	return nil
}

// kill sends SIGKILL to QEMU's process group.
func (vm *VM) kill() {
	if p := vm.cmd.Process; p != nil {
		syscall.Kill(-p.Pid, syscall.SIGKILL)
	}
}

// Stderr returns what QEMU wrote to stdout and stderr (the last 64 KiB).
func (vm *VM) Stderr() string { return vm.stderr.String() }

func copyIfMissing(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(dst, b, 0o644)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	// mu guards buf.
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
