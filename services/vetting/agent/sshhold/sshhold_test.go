package sshhold_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"kiln.dev/kiln/internal/syncbuf"
	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/services/vetting/agent/sshhold"
)

// key is a client key pair: the signer, its authorized_keys line and the
// private key in OpenSSH's file format.
type key struct {
	signer ssh.Signer
	line   string
	pem    []byte
}

func newKey(t *testing.T) key {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "kiln-test")
	if err != nil {
		t.Fatal(err)
	}
	return key{signer: s, line: string(ssh.MarshalAuthorizedKey(s.PublicKey())), pem: pem.EncodeToMemory(block)}
}

// serve starts a hold server for k on loopback; it stops when the test ends
// or when the returned cancel is called.
func serve(t *testing.T, k key) (srv *sshhold.Server, addr string, cancel func(), served <-chan error) {
	t.Helper()
	srv, err := sshhold.New(sshhold.Config{AuthorizedKey: k.line,
		Logger: testlog.New(t, slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		done <- srv.Serve(ctx, ln)
		close(finished)
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
	})
	return srv, ln.Addr().String(), cancel, done
}

func dial(t *testing.T, srv *sshhold.Server, addr, user string, k key) (*ssh.Client, error) {
	t.Helper()
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(srv.HostKey()))
	if err != nil {
		t.Fatalf("HostKey() = %q does not parse: %v", srv.HostKey(), err)
	}
	return ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(k.signer)},
		HostKeyCallback: ssh.FixedHostKey(hk), Timeout: 10 * time.Second})
}

func TestExec(t *testing.T) {
	k := newKey(t)
	srv, addr, _, _ := serve(t, k)
	c, err := dial(t, srv, addr, "root", k)
	if err != nil {
		t.Fatalf("login with the authorized key: %v", err)
	}
	defer c.Close()

	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	s.Stdin = strings.NewReader("from-stdin\n")
	err = s.Run(`read line; echo "out $line $USER $HOME"; echo err >&2; exit 3`)
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
		t.Errorf("Run = %v, want exit status 3", err)
	}
	if got, want := stdout.String(), "out from-stdin root /root\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if got := stderr.String(); got != "err\n" {
		t.Errorf("stderr = %q, want %q", got, "err\n")
	}

	// A command killed by a signal ends with exit-signal.
	s, err = c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run("kill -KILL $$")
	if !errors.As(err, &ee) || ee.Signal() != "KILL" {
		t.Errorf("Run(kill -KILL $$) = %v, want exit signal KILL", err)
	}
}

func TestRefused(t *testing.T) {
	k := newKey(t)
	srv, addr, _, _ := serve(t, k)
	if c, err := dial(t, srv, addr, "root", newKey(t)); err == nil {
		c.Close()
		t.Error("login with another key succeeded, want it refused")
	}
	if c, err := dial(t, srv, addr, "admin", k); err == nil {
		c.Close()
		t.Error("login as admin with the hold key succeeded, want only root")
	}
	// Password authentication is not offered at all.
	hk, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(srv.HostKey()))
	if c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.Password("root")},
		HostKeyCallback: ssh.FixedHostKey(hk), Timeout: 10 * time.Second}); err == nil {
		c.Close()
		t.Error("password login succeeded, want it refused")
	}
	if _, err := sshhold.New(sshhold.Config{AuthorizedKey: "ssh-ed25519 not-base64"}); !errors.Is(err, sshhold.ErrConfig) {
		t.Errorf("New with a malformed key = %v, want ErrConfig", err)
	}
	if _, err := sshhold.New(sshhold.Config{}); !errors.Is(err, sshhold.ErrConfig) {
		t.Errorf("New without a key = %v, want ErrConfig", err)
	}
}

// waitFor waits until the buffer holds want.
func waitFor(t *testing.T, b *syncbuf.Buffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("terminal output %q never showed %q", b.String(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestShellWithTerminal(t *testing.T) {
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	k := newKey(t)
	srv, addr, _, _ := serve(t, k)
	c, err := dial(t, srv, addr, "root", k)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("xterm-kiln", 24, 80, ssh.TerminalModes{}); err != nil {
		t.Fatalf("pty-req: %v", err)
	}
	in, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncbuf.Buffer
	s.Stdout = &out
	if err := s.Shell(); err != nil {
		t.Fatalf("shell: %v", err)
	}
	// The marker is computed by the shell, so the echoed input cannot match.
	fmt.Fprint(in, "test -t 0 && echo tty-$((40+2)); echo term-$TERM; stty size\n")
	waitFor(t, &out, "tty-42")
	waitFor(t, &out, "term-xterm-kiln")
	waitFor(t, &out, "24 80")
	if err := s.WindowChange(40, 100); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(in, "stty size\n")
	waitFor(t, &out, "40 100")
	fmt.Fprint(in, "exit 5\n")
	err = s.Wait()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 5 {
		t.Errorf("shell ended with %v, want exit status 5", err)
	}
}

func TestServeStopsSessions(t *testing.T) {
	k := newKey(t)
	srv, addr, cancel, served := serve(t, k)
	c, err := dial(t, srv, addr, "root", k)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("sleep 600"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve after its context ended = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if err := s.Wait(); err == nil {
		t.Error("the session's command finished normally, want it cut off")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("stopping took %v", took)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the listener still accepts after Serve returned")
	}
}

// TestOpenSSHClient logs in with Debian's ssh, checking the host key as an
// operator would from the holding event's host_key.
func TestOpenSSHClient(t *testing.T) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("OpenSSH client not installed (apt-get install openssh-client)")
	}
	k := newKey(t)
	srv, addr, _, _ := serve(t, k)
	host, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, k.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	knownHosts := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(knownHosts, []byte(fmt.Sprintf("[%s]:%s %s\n", host, port, srv.HostKey())), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(key string, extra ...string) (string, int) {
		args := []string{"-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
			"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + knownHosts, "-o", "ConnectTimeout=10",
			"-p", port}
		args = append(args, extra...)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, sshBin, args...).CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &ee):
			return string(out), ee.ExitCode()
		}
		t.Fatalf("ssh: %v\n%s", err, out)
		return "", 0
	}
	out, code := run(keyFile, "root@"+host, "echo hello-from-$USER; exit 7")
	if code != 7 || !strings.Contains(out, "hello-from-root") {
		t.Errorf("ssh root@%s 'echo …; exit 7' = %d %q, want 7 with hello-from-root", host, code, out)
	}
	out, code = run(keyFile, "-tt", "root@"+host, "tty")
	if code != 0 || !strings.Contains(out, "/dev/pts/") {
		t.Errorf("ssh -tt … tty = %d %q, want a /dev/pts terminal", code, out)
	}

	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, newKey(t).pem, 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = run(other, "root@"+host, "true")
	if code != 255 || !strings.Contains(out, "Permission denied (publickey)") {
		t.Errorf("ssh with another key = %d %q, want 255 Permission denied (publickey)", code, out)
	}
}

// TestBusyboxShell runs sessions with the live image's shell: /bin/sh is a
// link to gosh, a link to u-root's busybox (bb resolves the chain to its
// last link). It needs the busybox: $KILN_BUSYBOX or <repo>/out/bb (make
// out/bb).
func TestBusyboxShell(t *testing.T) {
	bb := os.Getenv("KILN_BUSYBOX")
	if bb == "" {
		bb = filepath.Join("..", "..", "..", "..", "out", "bb")
	}
	if _, err := os.Stat(bb); err != nil {
		t.Skipf("no u-root busybox (%v): build it with make out/bb or set KILN_BUSYBOX", err)
	}
	abs, err := filepath.Abs(bb)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// bb must be the file itself, as in the image: a link would be the
	// last link of the chain.
	data, err := os.ReadFile(abs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "bb"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"gosh": "bb", "sh": "gosh", "ls": "bb", "echo": "bb"} {
		if err := os.Symlink(target, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	k := newKey(t)
	srv, err := sshhold.New(sshhold.Config{AuthorizedKey: k.line, Shell: filepath.Join(bin, "sh"),
		Env: []string{"PATH=" + bin}, Logger: testlog.New(t, slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		srv.Serve(ctx, ln)
		close(served)
	}()
	defer func() {
		cancel()
		<-served
	}()
	c, err := dial(t, srv, ln.Addr().String(), "root", k)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.CombinedOutput("echo gosh-$((6*7)); ls " + bin)
	if err != nil || !strings.Contains(string(out), "gosh-42") || !strings.Contains(string(out), "gosh") {
		t.Errorf("exec under gosh = %q, %v; want gosh-42 and the listing", out, err)
	}

	s, err = c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("vt100", 24, 80, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	in, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var term syncbuf.Buffer
	s.Stdout = &term
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(in, "echo interactive-$((40+2))\n")
	waitFor(t, &term, "interactive-42")
	fmt.Fprint(in, "ls -l /proc/self/fd/0\n")
	waitFor(t, &term, "/dev/pts/")
	// goshsmall's prompt loop keeps going after "exit N" with N > 0
	// (it prints the status); a plain exit ends it.
	fmt.Fprint(in, "exit\n")
	if err := s.Wait(); err != nil {
		t.Errorf("gosh ended with %v, want exit status 0\n%s", err, term.String())
	}
}
