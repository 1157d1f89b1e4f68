package sshhold

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	"kiln.dev/kiln/services/vetting/agent"
)

// HoldOptions configure Hold.
type HoldOptions struct {
	// Listen is the SSH server's listen address (default ":22").
	Listen string
	// ServerURL is the appliance the agent reports to; the address
	// announced for SSH is this machine's address on the route to it.
	ServerURL string
	// Holding, when set, is called once the server is up with the address
	// and host key announced (the live image prints them on the console).
	Holding func(addr, hostKey string)
	// Shell, Runner and Logger are passed to the server (see Config).
	Shell  string
	Runner Runner
	Logger *slog.Logger
}

// Hold returns an agent.Options.Hold that serves SSH with the run's key
// until the orchestrator releases the host: it starts the server, announces
// its address and host key (the agent repeats that every heartbeat), and
// when the release comes (or ctx ends) closes the server and every session.
func Hold(o HoldOptions) func(context.Context, agent.HoldRequest) error {
	if o.Listen == "" {
		o.Listen = ":22"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, req agent.HoldRequest) error {
		srv, err := New(Config{AuthorizedKey: req.AuthorizedKey, Shell: o.Shell, Runner: o.Runner, Logger: o.Logger})
		if err != nil {
			return fmt.Errorf("holding the host: %w", err)
		}
		ln, err := net.Listen("tcp", o.Listen)
		if err != nil {
			return fmt.Errorf("holding the host: SSH server on %s: %w", o.Listen, err)
		}
		addr := Advertise(o.ServerURL, ln.Addr())
		sctx, stop := context.WithCancel(ctx)
		served := make(chan error, 1)
		go func() { served <- srv.Serve(sctx, ln) }()
		defer func() {
			stop()
			<-served
		}()
		if o.Holding != nil {
			o.Holding(addr, srv.HostKey())
		}
		// sctx: the heartbeat the announcement starts ends with the hold.
		if err := req.Announce(sctx, addr, srv.HostKey()); err != nil {
			// The heartbeat keeps trying; the server stays up meanwhile.
			o.Logger.Warn("announcing the hold", "error", err)
		}
		released := make(chan error, 1)
		go func() { released <- req.Wait(sctx) }()
		select {
		case err := <-released:
			return err
		case err := <-served:
			served <- err // for the deferred receive
			if err == nil {
				err = errors.New("stopped")
			}
			return fmt.Errorf("holding the host: the SSH server ended: %w", err)
		}
	}
}

// Advertise returns "ip:port" for the listener at ln: the listener's own IP
// when it is bound to one, else the local address of this machine on the
// route to the appliance at serverURL (found by connecting a UDP socket,
// which sends nothing), else the first usable interface address.
func Advertise(serverURL string, ln net.Addr) string {
	tcp, ok := ln.(*net.TCPAddr)
	if !ok {
		return ln.String()
	}
	port := strconv.Itoa(tcp.Port)
	if tcp.IP != nil && !tcp.IP.IsUnspecified() {
		return net.JoinHostPort(tcp.IP.String(), port)
	}
	if ip := routeTo(serverURL); ip != "" {
		return net.JoinHostPort(ip, port)
	}
	for _, a := range agent.InterfaceAddrs() {
		if ip, _, err := net.ParseCIDR(a); err == nil {
			return net.JoinHostPort(ip.String(), port)
		}
	}
	return net.JoinHostPort("0.0.0.0", port)
}

// routeTo returns this machine's source address toward the URL's host.
func routeTo(serverURL string) string {
	u, err := url.Parse(serverURL)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.Dial("udp4", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return ""
	}
	defer c.Close()
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && !a.IP.IsUnspecified() {
		return a.IP.String()
	}
	return ""
}
