package sshhold

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// session is one SSH session channel: at most one command, with or without
// a terminal.
type session struct {
	s   *Server
	ch  ssh.Channel
	log *slog.Logger

	env  []string // from "env" requests
	term string   // from "pty-req"
	pty  *pty     // set by "pty-req"

	cmd  *exec.Cmd // set once "shell" or "exec" started it
	done chan exit // receives the command's end once
}

// exit is how a session's command ended.
type exit struct {
	code   int    // exit status when signal is ""
	signal string // SSH signal name ("KILL") when killed by a signal
}

// session serves one channel until its command ends, the client closes it,
// or ctx ends (the hold is over).
func (s *Server) session(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request, log *slog.Logger) {
	ss := &session{s: s, ch: ch, log: log, done: make(chan exit, 1)}
	defer func() {
		if ss.pty != nil {
			ss.pty.Close()
		}
		ch.Close()
		go ssh.DiscardRequests(reqs) // the library needs them drained after close
	}()
	for {
		select {
		case req, ok := <-reqs:
			if !ok { // the client closed the channel or the connection
				ss.stop()
				return
			}
			ss.handle(req)
		case e := <-ss.done:
			ss.finish(e)
			return
		case <-ctx.Done():
			ss.stop()
			return
		}
	}
}

func (ss *session) handle(req *ssh.Request) {
	ok := false
	switch req.Type {
	case "env":
		var kv struct{ Name, Value string }
		if ssh.Unmarshal(req.Payload, &kv) == nil && allowedEnv(kv.Name) {
			ss.env = append(ss.env, kv.Name+"="+kv.Value)
			ok = true
		}
	case "pty-req":
		var p struct {
			Term                   string
			Cols, Rows, PixW, PixH uint32
			Modes                  string
		}
		if err := ssh.Unmarshal(req.Payload, &p); err != nil || ss.pty != nil || ss.cmd != nil {
			break
		}
		t, err := openPTY()
		if err != nil {
			ss.log.Warn("allocating a terminal", "error", err)
			break
		}
		ss.pty, ss.term = t, p.Term
		_ = t.Resize(p.Rows, p.Cols)
		ok = true
	case "window-change":
		var w struct{ Cols, Rows, PixW, PixH uint32 }
		if ssh.Unmarshal(req.Payload, &w) == nil && ss.pty != nil {
			ok = ss.pty.Resize(w.Rows, w.Cols) == nil
		}
	case "shell":
		ok = ss.start("", false)
	case "exec":
		var c struct{ Command string }
		if ssh.Unmarshal(req.Payload, &c) == nil {
			ok = ss.start(c.Command, true)
		}
	case "signal":
		var sig struct{ Name string }
		if ssh.Unmarshal(req.Payload, &sig) == nil && ss.cmd != nil && ss.cmd.Process != nil {
			if n, known := signals[sig.Name]; known {
				_ = unix.Kill(-ss.cmd.Process.Pid, n)
				ok = true
			}
		}
	}
	if req.WantReply {
		_ = req.Reply(ok, nil)
	}
}

// allowedEnv lists the variables a client may set (as OpenSSH's default
// AcceptEnv in Debian): locale only.
func allowedEnv(name string) bool {
	return name == "LANG" || strings.HasPrefix(name, "LC_")
}

var signals = map[string]syscall.Signal{
	"ABRT": unix.SIGABRT, "ALRM": unix.SIGALRM, "FPE": unix.SIGFPE, "HUP": unix.SIGHUP, "ILL": unix.SIGILL,
	"INT": unix.SIGINT, "KILL": unix.SIGKILL, "PIPE": unix.SIGPIPE, "QUIT": unix.SIGQUIT, "SEGV": unix.SIGSEGV,
	"TERM": unix.SIGTERM, "USR1": unix.SIGUSR1, "USR2": unix.SIGUSR2,
}

func signalName(sig syscall.Signal) string {
	for n, s := range signals {
		if s == sig {
			return n
		}
	}
	return fmt.Sprintf("SIG%d", int(sig))
}

// environ is a session command's environment.
func (ss *session) environ() []string {
	c := ss.s.cfg
	env := []string{"HOME=/root", "USER=" + c.User, "LOGNAME=" + c.User, "SHELL=" + c.Shell,
		"PATH=/bin:/sbin:/usr/bin:/usr/sbin"}
	if ss.term != "" {
		env = append(env, "TERM="+ss.term)
	}
	env = append(env, c.Env...)
	return append(env, ss.env...)
}

// outputDrain bounds how long a terminal's last output is awaited after its
// command ended (a background job may keep the terminal open forever).
const outputDrain = time.Second

// start runs the shell, with "-c command" for exec. It reports whether the
// request is granted: a shell that cannot start is still a granted request
// whose session prints why and exits 127, as sshd does.
func (ss *session) start(command string, isExec bool) bool {
	if ss.cmd != nil {
		return false
	}
	c := ss.s.cfg
	var args []string
	if isExec {
		args = []string{"-c", command}
	}
	cmd := exec.Command(c.Shell, args...)
	cmd.Dir = c.Dir
	cmd.Env = ss.environ()
	var stdin io.WriteCloser
	var copied chan struct{}
	if ss.pty != nil {
		tty, err := ss.pty.Terminal()
		if err != nil {
			return ss.failStart(err)
		}
		defer tty.Close() // the child has its own copy
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	} else {
		var err error
		if stdin, err = cmd.StdinPipe(); err != nil {
			return ss.failStart(err)
		}
		cmd.Stdout, cmd.Stderr = ss.ch, ss.ch.Stderr()
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		// Wait returns at most this long after the process exits even when
		// something it started holds stdout open.
		cmd.WaitDelay = 2 * time.Second
	}
	if err := ss.s.cfg.Runner.Start(cmd); err != nil {
		return ss.failStart(err)
	}
	ss.cmd = cmd
	ss.log.Info("session started", "command", command, "terminal", ss.pty != nil)
	if ss.pty != nil {
		copied = make(chan struct{})
		go func() {
			_, _ = io.Copy(ss.ch, ss.pty.master) // ends with EIO once the terminal is closed
			close(copied)
		}()
		go func() { _, _ = io.Copy(ss.pty.master, ss.ch) }()
	} else {
		go func() {
			_, _ = io.Copy(stdin, ss.ch)
			stdin.Close()
		}()
	}
	go func() {
		_ = ss.s.cfg.Runner.Wait(cmd)
		if copied != nil {
			select {
			case <-copied:
			case <-time.After(outputDrain):
			}
		}
		ss.done <- exitOf(cmd.ProcessState)
	}()
	return true
}

// failStart tells the client why its command could not start; the session
// then ends with status 127.
func (ss *session) failStart(err error) bool {
	fmt.Fprintf(ss.ch.Stderr(), "kiln-agent: cannot start %s: %v\r\n", ss.s.cfg.Shell, err)
	ss.log.Warn("starting a session command", "error", err)
	ss.done <- exit{code: 127}
	ss.cmd = &exec.Cmd{} // no second start on this channel
	return true
}

func exitOf(ps *os.ProcessState) exit {
	if ps == nil {
		return exit{code: 255}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exit{signal: signalName(ws.Signal())}
	}
	return exit{code: ps.ExitCode()}
}

// finish reports the command's end to the client and closes its output.
func (ss *session) finish(e exit) {
	_ = ss.ch.CloseWrite()
	if e.signal != "" {
		_, _ = ss.ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Message    string
			Lang       string
		}{Signal: e.signal}))
	} else {
		_, _ = ss.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(e.code)}))
	}
	ss.log.Info("session ended", "status", e.code, "signal", e.signal)
}

// stop ends a running command when its channel went away: a hang-up, then
// a kill if it is still there after a second.
func (ss *session) stop() {
	if ss.cmd == nil || ss.cmd.Process == nil {
		return
	}
	pid := ss.cmd.Process.Pid
	_ = unix.Kill(-pid, unix.SIGHUP)
	_ = unix.Kill(-pid, unix.SIGCONT)
	select {
	case <-ss.done:
		return
	case <-time.After(time.Second):
	}
	_ = unix.Kill(-pid, unix.SIGKILL)
	select {
	case <-ss.done:
	case <-time.After(5 * time.Second):
		ss.log.Warn("a session command outlived SIGKILL", "pid", pid)
	}
}
