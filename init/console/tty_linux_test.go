package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"kiln.dev/kiln/internal/syncbuf"
)

// openPTY returns a pseudo-terminal's master and the path of its slave, or
// skips the test where the machine has none.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here (%v); a real terminal cannot be tested", err)
	}
	t.Cleanup(func() { m.Close() })
	rc, err := m.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		if ierr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ierr == nil {
			n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
		}
	}); err != nil || ierr != nil {
		t.Skipf("cannot unlock a pseudo-terminal here (%v, %v)", err, ierr)
	}
	return m, fmt.Sprintf("/dev/pts/%d", n)
}

// screen collects what a pty master reads.
func screen(t *testing.T, m *os.File) *syncbuf.Buffer {
	out := &syncbuf.Buffer{}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	return out
}

func termios(t *testing.T, tty *TTY) *unix.Termios {
	t.Helper()
	var tio *unix.Termios
	if err := tty.control(func(fd int) (err error) {
		tio, err = unix.IoctlGetTermios(fd, unix.TCGETS)
		return err
	}); err != nil {
		t.Fatalf("reading termios: %v", err)
	}
	return tio
}

func TestOpenTTYSetsTheLineDiscipline(t *testing.T) {
	_, slave := openPTY(t)
	tty, err := OpenTTY(slave)
	if err != nil {
		t.Fatalf("OpenTTY(%s) error: %v", slave, err)
	}
	defer tty.Close()
	tio := termios(t, tty)
	checks := []struct {
		what string
		ok   bool
	}{
		{"canonical input", tio.Lflag&unix.ICANON != 0},
		{"echo", tio.Lflag&unix.ECHO != 0},
		{"no signals from the keyboard", tio.Lflag&unix.ISIG == 0},
		{"Ctrl-C ends a line", tio.Cc[unix.VEOL] == ctrlC},
		{"CR read as newline", tio.Iflag&unix.ICRNL != 0},
		{"newline written as CR LF", tio.Oflag&(unix.OPOST|unix.ONLCR) == unix.OPOST|unix.ONLCR},
		{"8 data bits, no parity, 1 stop bit", tio.Cflag&(unix.CSIZE|unix.PARENB|unix.CSTOPB) == unix.CS8},
		{"no hardware flow control, modem lines ignored", tio.Cflag&unix.CRTSCTS == 0 && tio.Cflag&unix.CLOCAL != 0},
		{"115200 baud", tio.Cflag&unix.CBAUD == unix.B115200},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("OpenTTY(%s): %s not set (termios %+v)", slave, c.what, tio)
		}
	}
}

func TestOpenTTYCtrlCEndsALine(t *testing.T) {
	m, slave := openPTY(t)
	tty, err := OpenTTY(slave)
	if err != nil {
		t.Fatalf("OpenTTY(%s) error: %v", slave, err)
	}
	defer tty.Close()
	if _, err := m.WriteString("abc\x03"); err != nil {
		t.Fatal(err)
	}
	tty.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := tty.Read(buf)
	if err != nil || string(buf[:n]) != "abc\x03" {
		t.Errorf("Read after typing abc^C = %q, %v; want %q, nil", buf[:n], err, "abc\x03")
	}
}

func TestOpenTTYErrors(t *testing.T) {
	tests := []struct {
		path string
		want string
	}{
		{"/nonexistent/tty", "opening terminal /nonexistent/tty: "},
		{"/dev/null", "reading the line settings of /dev/null (is it a terminal?): "},
	}
	for _, tt := range tests {
		_, err := OpenTTY(tt.path)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("OpenTTY(%s) = %v, want an error starting %q", tt.path, err, tt.want)
		}
	}
}

// TestRunOnARealTerminal drives the console on a pseudo-terminal, through a
// real shell, and checks Run returns on cancel although a read is pending.
func TestRunOnARealTerminal(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skipf("no /bin/sh to play the shell: %v", err)
	}
	m, slave := openPTY(t)
	tty, err := OpenTTY(slave)
	if err != nil {
		t.Fatalf("OpenTTY(%s) error: %v", slave, err)
	}
	defer tty.Close()
	out := screen(t, m)

	shell := ExecShell{Path: "/bin/sh", Args: []string{"-c",
		// A controlling terminal lets the shell open /dev/tty; stty shows its line discipline.
		`exec 3</dev/tty && echo ctty=ok; stty -a </dev/tty | tr ' ' '\n' | grep -x -e isig -e -isig; exit 3`}}
	c := &Console{Hostname: "pty", Shell: shell, RetryDelay: 10 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, tty) }()

	wait := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("terminal never showed %q; screen:\n%s", want, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait("press Enter for the recovery menu\r\n") // ONLCR: newlines arrive as CR LF
	m.WriteString("\r")                           // a serial terminal's Enter
	wait("choice [1-8, q]: ")
	m.WriteString("6\r")
	wait("ctty=ok\r\nisig\r\n")
	wait("the shell exited: exit status 3\r\n")
	wait("choice [1-8, q]: ")
	if got := termios(t, tty); got.Lflag&unix.ISIG != 0 || got.Cc[unix.VEOL] != ctrlC {
		t.Errorf("after the shell the terminal is not back in menu mode: lflag %#x, VEOL %d", got.Lflag, got.Cc[unix.VEOL])
	}

	cancel() // Run has a read pending on the terminal
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel while reading a real terminal")
	}
	buf := make([]byte, 1)
	if _, err := tty.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read after Run returned = %v, want the deadline Run set", err)
	}
}

// countingStarter starts and waits like os/exec and counts the calls, to show
// ExecShell goes through its Starter (PID 1's reaper).
type countingStarter struct {
	// mu guards starts and waits.
	mu            sync.Mutex
	starts, waits int
}

func (c *countingStarter) Start(cmd *exec.Cmd) error {
	c.mu.Lock()
	c.starts++
	c.mu.Unlock()
	return cmd.Start()
}

func (c *countingStarter) Wait(cmd *exec.Cmd) error {
	c.mu.Lock()
	c.waits++
	c.mu.Unlock()
	return cmd.Wait()
}

// vhangup hangs up every open file of the terminal at path, as the kernel does
// when a session leader whose controlling terminal is a serial line exits
// (pseudo-terminals are spared that, so the test does it by hand).
func vhangup(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return control(f, func(fd int) error { return unix.IoctlSetInt(fd, unix.TIOCVHANGUP, 0) })
}

// hangingShell runs the shell, then hangs the terminal up as the shell's exit
// would on ttyS0, and checks the console's own file is dead before the menu
// reopens it.
type hangingShell struct {
	ExecShell
	path string
	// deadErr is the error writing the console's file after the hangup.
	deadErr chan error
}

func (h hangingShell) RunShell(ctx context.Context, tty io.ReadWriter) error {
	err := h.ExecShell.RunShell(ctx, tty)
	if herr := vhangup(h.path); herr != nil {
		return herr
	}
	_, werr := tty.Write([]byte("lost\n"))
	h.deadErr <- werr
	return err
}

// TestRunSurvivesAHangup: after the shell exits and the terminal is hung up,
// the menu reopens it and works on it again; the shell was started and waited
// for through the Starter.
func TestRunSurvivesAHangup(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skipf("no /bin/sh to play the shell: %v", err)
	}
	m, slave := openPTY(t)
	if err := vhangup(slave); err != nil {
		t.Skipf("cannot hang up a terminal here (TIOCVHANGUP needs CAP_SYS_ADMIN): %v", err)
	}
	tty, err := OpenTTY(slave)
	if err != nil {
		t.Fatalf("OpenTTY(%s) error: %v", slave, err)
	}
	defer tty.Close()
	out := screen(t, m)

	starter := &countingStarter{}
	shell := hangingShell{
		ExecShell: ExecShell{Path: "/bin/sh", Args: []string{"-c", "exit 0"}, Starter: starter},
		path:      slave,
		deadErr:   make(chan error, 1),
	}
	c := &Console{Hostname: "pty", Shell: shell, RetryDelay: 10 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, tty) }()

	wait := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("terminal never showed %q; screen:\n%s", want, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait("press Enter for the recovery menu\r\n")
	m.WriteString("\r")
	wait("choice [1-8, q]: ")
	m.WriteString("6\r")
	// (The hangup flushes what the pty master has not read yet, so the
	// shell's own output is not checked.)
	select {
	case err := <-shell.deadErr:
		if !errors.Is(err, unix.EIO) {
			t.Fatalf("writing the console's file after the hangup = %v, want EIO (the hangup did not happen)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the shell never ran and hung up the terminal; screen:\n%s", out.String())
	}
	wait("the shell exited.\r\n")
	// waitAfter waits until the screen shows want after the shell's exit.
	waitAfter := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(after(out.String(), "the shell exited.\r\n"), want) {
			if time.Now().After(deadline) {
				t.Fatalf("terminal never showed %q after the shell; screen:\n%s", want, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitAfter("choice [1-8, q]: ")
	m.WriteString("q\r") // read from the reopened file
	waitAfter("press Enter for the recovery menu\r\n")
	if got := termios(t, tty); got.Lflag&unix.ISIG != 0 || got.Cc[unix.VEOL] != ctrlC {
		t.Errorf("after the hangup the terminal is not in menu mode: lflag %#x, VEOL %d", got.Lflag, got.Cc[unix.VEOL])
	}
	starter.mu.Lock()
	if starter.starts != 1 || starter.waits != 1 {
		t.Errorf("Starter calls: %d starts, %d waits; want 1 and 1", starter.starts, starter.waits)
	}
	starter.mu.Unlock()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel on a reopened terminal")
	}
}
