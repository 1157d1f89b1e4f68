package apiclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"kiln.dev/kiln/services/api/wire"
)

// Tunnel upgrades a GET of path (a vetting run's /tunnel) to a TCP stream
// and copies in to it and it to out until the far end closes. It speaks
// HTTP/1.1 on its own connection so it can half-close it (TLS
// close_notify) when in ends: that is what ssh's ProxyCommand needs.
func (c *Client) Tunnel(ctx context.Context, path string, in io.Reader, out io.Writer) error {
	u, err := url.Parse(c.base)
	if err != nil {
		return err
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), map[bool]string{true: "443", false: "80"}[u.Scheme == "https"])
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("reaching %s: %w", c.base, err)
	}
	conn := raw
	if u.Scheme == "https" {
		var cfg *tls.Config
		if t, ok := c.hc.Transport.(*http.Transport); ok && t.TLSClientConfig != nil {
			cfg = t.TLSClientConfig.Clone()
		} else {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		cfg.ServerName, cfg.NextProtos = u.Hostname(), []string{"http/1.1"}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return err
		}
		conn = tc
	}
	defer conn.Close()
	req, _ := http.NewRequestWithContext(ctx, "GET", c.base+path, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", wire.TunnelProtocol)
	req.Header.Set("Authorization", "Bearer "+c.token)
	if err := req.Write(conn); err != nil {
		return err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return responseError(resp)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(conn, in)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	_, err = io.Copy(out, br)
	if err != nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
		return err
	}
	return nil
}
