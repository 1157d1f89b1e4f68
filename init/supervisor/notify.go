package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// notice is one parsed sd_notify datagram.
type notice struct {
	pid       int // sender, from SCM_CREDENTIALS; 0 when the kernel sent none
	ready     bool
	stopping  bool
	watchdog  bool
	hasStatus bool
	status    string
}

// parseNotice parses the newline-separated KEY=VALUE assignments of an
// sd_notify datagram. Unknown keys are ignored, as systemd does.
func parseNotice(b []byte) notice {
	var n notice
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte("="))
		if !ok {
			continue
		}
		switch string(k) {
		case "READY":
			n.ready = string(v) == "1"
		case "STOPPING":
			n.stopping = string(v) == "1"
		case "WATCHDOG":
			n.watchdog = string(v) == "1"
		case "STATUS":
			n.hasStatus = true
			n.status = string(v)
		}
	}
	return n
}

// listenNotify binds the unixgram socket at path (replacing a stale one) with
// SO_PASSCRED set, so every datagram carries its sender's pid.
func listenNotify(path string) (*net.UnixConn, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale notify socket: %w", err)
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("binding notify socket: %w", err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("setting SO_PASSCRED: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		c.Close()
		return nil, fmt.Errorf("setting SO_PASSCRED: %w", errors.Join(err, serr))
	}
	return c, nil
}

// readNotices reads datagrams from c and sends them to out until c is closed
// or done is closed.
func readNotices(c *net.UnixConn, out chan<- notice, done <-chan struct{}) {
	buf := make([]byte, 4096)
	oob := make([]byte, syscall.CmsgSpace(syscall.SizeofUcred))
	for {
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // do not spin on a persistent error
			continue
		}
		no := parseNotice(buf[:n])
		if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if cred, err := syscall.ParseUnixCredentials(&m); err == nil {
					no.pid = int(cred.Pid)
				}
			}
		}
		select {
		case out <- no:
		case <-done:
			return
		}
	}
}

// fromGroup reports whether pid is the process group leader pgid or a member
// of its group.
func fromGroup(pid, pgid int) bool {
	if pid == pgid {
		return true
	}
	g, err := syscall.Getpgid(pid)
	return err == nil && g == pgid
}
