package console

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// TTY is a terminal opened for the console. Read, Write and SetReadDeadline
// go to the terminal; ExecShell switches its line discipline for the shell and
// gives the shell a file of its own; Reopen replaces a hung-up file.
type TTY struct {
	// path is the terminal's device, for Reopen and the shell's file.
	path string
	// menu is the line discipline for the menu: canonical, echo, Ctrl-C ends a line.
	menu unix.Termios
	// shell is the same with signals on, for a shell that owns the terminal.
	shell unix.Termios

	// mu guards f, which Reopen replaces.
	mu sync.Mutex
	f  *os.File
}

// OpenTTY opens a terminal (e.g. /dev/ttyS0 or /dev/tty1) without making it
// the caller's controlling terminal and sets it for the menu: 115200 baud 8N1
// without flow control or modem lines, canonical input with echo, CR read as
// newline, newline written as CR LF, and Ctrl-C delivered as a line ending
// instead of a signal (PID 1 must never get SIGINT from a keyboard).
func OpenTTY(path string) (*TTY, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening terminal %s: %w", path, err)
	}
	t := &TTY{path: path, f: f}
	var cur *unix.Termios
	if err := t.control(func(fd int) (err error) {
		cur, err = unix.IoctlGetTermios(fd, unix.TCGETS)
		return err
	}); err != nil {
		f.Close()
		return nil, fmt.Errorf("reading the line settings of %s (is it a terminal?): %w", path, err)
	}
	t.menu, t.shell = lineModes(*cur)
	if err := t.consoleMode(); err != nil {
		f.Close()
		return nil, err
	}
	return t, nil
}

// lineModes derives the menu and shell line disciplines from the current one.
func lineModes(cur unix.Termios) (menu, shell unix.Termios) {
	m := cur
	m.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.IXOFF
	m.Iflag |= unix.ICRNL | unix.IUTF8
	m.Oflag |= unix.OPOST | unix.ONLCR
	m.Cflag &^= unix.CSIZE | unix.PARENB | unix.CSTOPB | unix.CBAUD | unix.CRTSCTS
	m.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL | unix.B115200
	m.Ispeed, m.Ospeed = 115200, 115200
	m.Lflag |= unix.ICANON | unix.ECHO | unix.ECHOE | unix.ECHOK | unix.ECHOCTL | unix.ECHOKE | unix.IEXTEN
	m.Lflag &^= unix.ISIG | unix.ECHONL
	m.Cc[unix.VINTR] = ctrlC
	m.Cc[unix.VEOF] = 0x04   // Ctrl-D
	m.Cc[unix.VERASE] = 0x7f // DEL, what most terminal programs send for Backspace
	m.Cc[unix.VKILL] = 0x15  // Ctrl-U
	m.Cc[unix.VMIN] = 1
	m.Cc[unix.VTIME] = 0

	shell = m
	shell.Lflag |= unix.ISIG
	shell.Cc[unix.VEOL] = 0 // disabled

	m.Cc[unix.VEOL] = ctrlC // Ctrl-C ends the line; the console reads it as "cancel"
	return m, shell
}

// file returns the terminal's current file.
func (t *TTY) file() *os.File {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.f
}

func (t *TTY) control(fn func(fd int) error) error { return control(t.file(), fn) }

// control runs fn on f's descriptor.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn() // not Fd(): that would make reads blocking and deadlines useless
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// setMode sets the line discipline tio on f.
func setMode(f *os.File, tio *unix.Termios) error {
	if err := control(f, func(fd int) error { return unix.IoctlSetTermios(fd, unix.TCSETS, tio) }); err != nil {
		return fmt.Errorf("setting the line discipline of %s: %w", f.Name(), err)
	}
	return nil
}

// consoleMode sets the menu's line discipline.
func (t *TTY) consoleMode() error { return setMode(t.file(), &t.menu) }

// shellMode sets the shell's line discipline (Ctrl-C is a signal again).
func (t *TTY) shellMode() error { return setMode(t.file(), &t.shell) }

// Read reads from the terminal.
func (t *TTY) Read(p []byte) (int, error) { return t.file().Read(p) }

// Write writes to the terminal.
func (t *TTY) Write(p []byte) (int, error) { return t.file().Write(p) }

// SetReadDeadline makes a pending and future Reads return at tm (zero: never).
func (t *TTY) SetReadDeadline(tm time.Time) error { return t.file().SetReadDeadline(tm) }

// Reopen opens the terminal afresh in the menu's line discipline, makes the new
// file the one Read, Write and SetReadDeadline use, and closes the old one.
//
// It is how the console survives a hangup: when a session leader whose
// controlling terminal is not a pseudo-terminal exits (the recovery shell on
// ttyS0 or tty1), the kernel hangs up every open file of that terminal, the
// console's included. A hung-up file reads only end of input and fails writes
// with EIO for good; a new open of the device works again. The old file's
// deadline is not carried over.
//
// The caller must not have a Read pending: it would end with an error from the
// closed file. Run reopens only between reads (see doc.go).
func (t *TTY) Reopen() error {
	f, err := os.OpenFile(t.path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("reopening terminal %s: %w", t.path, err)
	}
	if err := setMode(f, &t.menu); err != nil {
		f.Close()
		return err
	}
	t.mu.Lock()
	old := t.f
	t.f = f
	t.mu.Unlock()
	old.Close()
	return nil
}

// openForChild opens the terminal again for a child process. The child must not
// get t's own file: handing an *os.File to a child (via Fd) makes its open file
// description blocking, and a blocked read ignores deadlines, so Run could not
// release its pending read on return.
func (t *TTY) openForChild() (*os.File, error) {
	f, err := os.OpenFile(t.path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening terminal %s for the shell: %w", t.path, err)
	}
	return f, nil
}

// Close leaves the terminal in the shell's line discipline (signals on) and closes it.
func (t *TTY) Close() error {
	_ = t.shellMode()
	return t.file().Close()
}
