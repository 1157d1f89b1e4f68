package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Exchanger sends a question upstream and returns the answer.
type Exchanger interface {
	Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error)
}

// ErrNoUpstream is returned when no upstream is configured.
var ErrNoUpstream = errors.New("no upstream DNS server configured")

// upstreams asks each server in turn until one gives a usable answer.
type upstreams struct {
	addrs   []string // host:port
	timeout time.Duration
}

// newUpstreams parses "ip" or "ip:port" entries (port 53 by default).
func newUpstreams(list []string, timeout time.Duration) (*upstreams, error) {
	u := &upstreams{timeout: timeout}
	for _, s := range list {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			u.addrs = append(u.addrs, ap.String())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("upstream %q is neither an IP address nor IP:port", s)
		}
		u.addrs = append(u.addrs, net.JoinHostPort(a.String(), "53"))
	}
	return u, nil
}

// Exchange tries the upstreams in order. A truncated UDP answer is asked again
// over TCP. SERVFAIL and REFUSED move on to the next upstream; the last answer
// or error is returned when none does better.
func (u *upstreams) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	if len(u.addrs) == 0 {
		return nil, ErrNoUpstream
	}
	var last *dns.Msg
	var lastErr error
	for _, addr := range u.addrs {
		if ctx.Err() != nil {
			break
		}
		r, err := u.exchangeOne(ctx, m, addr)
		if err != nil {
			lastErr = fmt.Errorf("asking %s: %w", addr, err)
			continue
		}
		if r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused {
			last = r
			continue
		}
		return r, nil
	}
	if last != nil {
		return last, nil
	}
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return nil, lastErr
}

func (u *upstreams) exchangeOne(ctx context.Context, m *dns.Msg, addr string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	c := &dns.Client{Net: "udp", Timeout: u.timeout}
	r, _, err := c.ExchangeContext(ctx, m, addr)
	if err == nil && !r.Truncated {
		return r, nil
	}
	if err != nil && !errors.Is(err, dns.ErrBuf) {
		return nil, err
	}
	c = &dns.Client{Net: "tcp", Timeout: u.timeout}
	r, _, err = c.ExchangeContext(ctx, m, addr)
	return r, err
}
