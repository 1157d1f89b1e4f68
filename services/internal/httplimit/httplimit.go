// Package httplimit keeps clients that open many connections or send
// request bodies slowly from holding an HTTP server's connections: a
// listener that caps connections in total and per source address, and a
// handler wrapper that gives a request body a deadline growing with the
// bytes received (a minimum data rate, as Apache's mod_reqtimeout does).
package httplimit

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Conns caps a listener's open connections.
type Conns struct {
	Total     int // all sources together
	PerSource int // one source address (IPv6: one /64)
}

// Listen wraps ln: a connection over a cap is closed as soon as it is
// accepted (the client sees the connection end at once, instead of the
// server blocking in Accept while slow clients hold every slot).
func Listen(ln net.Listener, c Conns) net.Listener {
	return &listener{Listener: ln, c: c, per: map[netip.Prefix]int{}}
}

type listener struct {
	net.Listener
	c Conns

	// mu guards total and per.
	mu    sync.Mutex
	total int
	per   map[netip.Prefix]int // open connections by source; entries at 0 are deleted
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceOf(c.RemoteAddr())
		if l.take(src) {
			return &conn{Conn: c, release: func() { l.give(src) }}, nil
		}
		c.Close()
	}
}

func (l *listener) take(src netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if (l.c.Total > 0 && l.total >= l.c.Total) || (l.c.PerSource > 0 && l.per[src] >= l.c.PerSource) {
		return false
	}
	l.total++
	l.per[src]++
	return true
}

func (l *listener) give(src netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.per[src]--; l.per[src] <= 0 {
		delete(l.per, src)
	}
}

// sourceOf is the address a connection counts against: the host address,
// or its /64 for IPv6 (one machine easily holds a whole /64).
func sourceOf(a net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p
	}
	return netip.PrefixFrom(ip, 32)
}

type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// Body is the deadline a request body must keep: Grace to start, then at
// least MinRate bytes per second on average, and never Idle without a byte.
type Body struct {
	Grace   time.Duration
	MinRate int64 // bytes per second
	Idle    time.Duration
}

// Handler wraps h so that a request's body is read under b's deadlines; a
// client too slow gets its connection closed (the handler's read fails).
// Requests without a body, and the time after the body is read, have no
// read deadline: event streams and hijacked tunnels stay open as long as
// they need.
func Handler(h http.Handler, b Body) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			_ = rc.SetReadDeadline(time.Time{})
			h.ServeHTTP(w, r)
			return
		}
		br := &body{ReadCloser: r.Body, rc: rc, b: b, start: time.Now()}
		br.extend()
		r.Body = br
		h.ServeHTTP(w, r)
	})
}

type body struct {
	io.ReadCloser
	rc    *http.ResponseController
	b     Body
	start time.Time
	n     int64
	done  bool
}

// extend sets the read deadline for the next read.
func (r *body) extend() {
	d := r.start.Add(r.b.Grace)
	if r.b.MinRate > 0 {
		d = d.Add(time.Duration(float64(r.n) / float64(r.b.MinRate) * float64(time.Second)))
	}
	if idle := time.Now().Add(r.b.Idle); r.b.Idle > 0 && idle.Before(d) {
		d = idle
	}
	_ = r.rc.SetReadDeadline(d)
}

func (r *body) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n += int64(n)
	switch {
	case err == nil:
		r.extend()
	case errors.Is(err, io.EOF) && !r.done:
		// Read in full: what follows (a response, a stream) has no deadline.
		r.done = true
		_ = r.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
