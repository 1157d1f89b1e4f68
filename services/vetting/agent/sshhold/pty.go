package sshhold

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// pty is a pseudo-terminal's master side. The terminal (slave) side is
// opened from it with TIOCGPTPEER, so no /dev/pts path is looked up.
type pty struct {
	master *os.File
}

// openPTY opens /dev/ptmx (which needs devpts mounted on /dev/pts) and
// unlocks its terminal.
func openPTY() (*pty, error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening a pseudo-terminal (is devpts mounted on /dev/pts?): %w", err)
	}
	p := &pty{master: m}
	if err := p.control(func(fd int) error { return unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0) }); err != nil {
		m.Close()
		return nil, fmt.Errorf("unlocking the pseudo-terminal: %w", err)
	}
	return p, nil
}

// control runs f on the master's descriptor without taking it out of Go's
// poller (os.File.Fd would make reads blocking and Close unable to end them).
func (p *pty) control(f func(fd int) error) error {
	rc, err := p.master.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// Terminal opens the terminal side, for a child's stdin, stdout and stderr.
func (p *pty) Terminal() (*os.File, error) {
	var tfd int
	err := p.control(func(fd int) error {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
		if errno != 0 {
			return errno
		}
		tfd = int(r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("opening the terminal of a pseudo-terminal: %w", err)
	}
	return os.NewFile(uintptr(tfd), "pty"), nil
}

// Resize sets the terminal's window size; the kernel signals SIGWINCH to
// its foreground process group.
func (p *pty) Resize(rows, cols uint32) error {
	if rows == 0 || cols == 0 || rows > 0xffff || cols > 0xffff {
		return fmt.Errorf("window size %dx%d out of range", cols, rows)
	}
	return p.control(func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
	})
}

// Close closes the master: the terminal hangs up.
func (p *pty) Close() error { return p.master.Close() }
