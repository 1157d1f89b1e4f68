// Package sshhold is the SSH server a vetting agent runs while it holds a
// failed machine for the operator: an ephemeral ed25519 host key made at
// start, one user (root) and one authorized key (the run's hold key), and
// sessions with exec, shell, pty-req, window-change and signal. No
// passwords, no port forwarding, no subsystems: the operator gets a shell on
// the live image to look at the hardware, nothing more.
package sshhold

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Runner starts and waits for session commands. PID 1 passes its reaper, so
// that reaping orphans never steals a session's exit status; the default
// runs them with os/exec directly.
type Runner interface {
	Start(cmd *exec.Cmd) error
	Wait(cmd *exec.Cmd) error
}

type execRunner struct{}

func (execRunner) Start(cmd *exec.Cmd) error { return cmd.Start() }
func (execRunner) Wait(cmd *exec.Cmd) error  { return cmd.Wait() }

// Config configures a Server.
type Config struct {
	// AuthorizedKey is the one public key accepted, in authorized_keys
	// format ("ssh-ed25519 AAAA… comment"); required.
	AuthorizedKey string
	// User is the one user name accepted (default "root").
	User string
	// Shell runs sessions: "Shell" for a shell, "Shell -c CMD" for exec
	// (default /bin/sh).
	Shell string
	// Dir is the sessions' working directory (default "/").
	Dir string
	// Env is added to every session's environment after the defaults (HOME,
	// USER, LOGNAME, SHELL, PATH, TERM).
	Env []string
	// Runner starts session commands (default os/exec).
	Runner Runner
	// Logger gets connection and session events (default: discarded).
	Logger *slog.Logger
}

// ErrConfig is wrapped by errors about a Config that cannot be served.
var ErrConfig = errors.New("ssh hold config")

// Server is an SSH server with one key. Serve it on any number of listeners.
type Server struct {
	cfg     Config
	authKey []byte // the authorized key's wire encoding
	signer  ssh.Signer
	log     *slog.Logger

	// mu guards conns.
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// New makes a server with a fresh host key.
func New(c Config) (*Server, error) {
	if strings.TrimSpace(c.AuthorizedKey) == "" {
		return nil, fmt.Errorf("%w: no authorized key: the run's hold key is empty", ErrConfig)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.AuthorizedKey))
	if err != nil {
		return nil, fmt.Errorf("%w: the authorized key does not parse (want one authorized_keys line such as \"ssh-ed25519 AAAA…\"): %v", ErrConfig, err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the host key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("generating the host key: %w", err)
	}
	if c.User == "" {
		c.User = "root"
	}
	if c.Shell == "" {
		c.Shell = "/bin/sh"
	}
	if c.Dir == "" {
		c.Dir = "/"
	}
	if c.Runner == nil {
		c.Runner = execRunner{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: c, authKey: key.Marshal(), signer: signer,
		log: c.Logger.With("component", "sshhold"), conns: map[net.Conn]struct{}{}}, nil
}

// HostKey returns the server's public host key in authorized_keys format
// ("ssh-ed25519 AAAA…"), for the operator's known_hosts.
func (s *Server) HostKey() string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.signer.PublicKey())))
}

func (s *Server) sshConfig() *ssh.ServerConfig {
	c := &ssh.ServerConfig{
		ServerVersion: "SSH-2.0-kiln-agent",
		MaxAuthTries:  6,
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if meta.User() != s.cfg.User {
				return nil, fmt.Errorf("user %q: only %s may log in", meta.User(), s.cfg.User)
			}
			if subtle.ConstantTimeCompare(key.Marshal(), s.authKey) != 1 {
				return nil, errors.New("not the run's hold key")
			}
			return &ssh.Permissions{}, nil
		},
	}
	c.AddHostKey(s.signer)
	return c
}

// handshakeTimeout bounds an unauthenticated connection.
const handshakeTimeout = 30 * time.Second

// Serve accepts connections on ln until ctx ends, then closes ln and every
// connection and returns nil. An accept error ends it early.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	cfg := s.sshConfig()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer func() {
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accepting SSH connections: %w", err)
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c, cfg)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

func (s *Server) serveConn(ctx context.Context, c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	log := s.log.With("remote", c.RemoteAddr().String())
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		log.Info("SSH login refused", "error", err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	defer conn.Close()
	log.Info("SSH login", "user", conn.User())
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.Prohibited, "only sessions are served while holding")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			log.Warn("accepting a session", "error", err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.session(ctx, ch, creqs, log)
		}()
	}
}
