package syslog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"kiln.dev/kiln/services/internal/keyrate"
	"kiln.dev/kiln/services/metrics"
)

// Received is a message with where and when it arrived.
type Received struct {
	Message
	Source   netip.Addr
	Proto    string // "udp" or "tcp"
	Received time.Time
}

// Sink stores received messages, a batch at a time.
type Sink interface {
	StoreSyslog(ctx context.Context, batch []Received) error
}

// Options configures the syslog server.
type Options struct {
	// Rate and Burst bound the messages kept per source address (per
	// second, and at once); more are dropped and counted. Defaults 100
	// and 500: a booting machine's burst of kernel messages fits, a
	// flooding one cannot fill the database.
	Rate, Burst float64
	// MaxSources is the number of source addresses whose rate is tracked
	// (default 4096); MaxConns the TCP connections at once (default 256)
	// and MaxConnsPerSource those of one address (default 4).
	MaxSources, MaxConns, MaxConnsPerSource int
	// IdleTimeout closes a TCP connection that sent nothing for that long
	// (default 10 minutes).
	IdleTimeout time.Duration
	// Queue is the number of messages waiting for the sink (default 4096);
	// beyond it messages are dropped and counted.
	Queue int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Metrics receives the server's families; nil counts nothing.
	Metrics *metrics.Registry
}

func (o Options) withDefaults() Options {
	if o.Rate <= 0 {
		o.Rate = 100
	}
	if o.Burst <= 0 {
		o.Burst = 500
	}
	if o.MaxSources <= 0 {
		o.MaxSources = 4096
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 256
	}
	if o.MaxConnsPerSource <= 0 {
		o.MaxConnsPerSource = 4
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 10 * time.Minute
	}
	if o.Queue <= 0 {
		o.Queue = 4096
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Server receives syslog over UDP and TCP and hands it to a Sink.
type Server struct {
	opts  Options
	sink  Sink
	log   *slog.Logger
	limit *keyrate.Limiter[netip.Addr]
	queue chan Received
	stats *syslogMetrics // nil counts nothing

	// mu guards conns.
	mu    sync.Mutex
	conns map[netip.Addr]int // open TCP connections by source
}

// New returns a server storing into sink.
func New(o Options, sink Sink, log *slog.Logger) *Server {
	o = o.withDefaults()
	return &Server{
		opts: o, sink: sink, log: log,
		limit: keyrate.New[netip.Addr](o.Rate, o.Burst, o.MaxSources, o.Now),
		queue: make(chan Received, o.Queue),
		stats: newMetrics(o.Metrics),
		conns: map[netip.Addr]int{},
	}
}

// Serve receives on udp and tcp (either may be nil) until ctx is
// cancelled; ready is called once both listen. Messages still queued are
// stored before it returns.
func (s *Server) Serve(ctx context.Context, udp *net.UDPConn, tcp net.Listener, ready func()) error {
	stored := make(chan struct{})
	go func() { s.store(); close(stored) }()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	if udp != nil {
		stop := context.AfterFunc(ctx, func() { udp.Close() })
		defer stop()
		wg.Go(func() { errs <- s.serveUDP(ctx, udp) })
	}
	if tcp != nil {
		stop := context.AfterFunc(ctx, func() { tcp.Close() })
		defer stop()
		wg.Go(func() { errs <- s.serveTCP(ctx, tcp) })
	}
	if ready != nil {
		ready()
	}
	wg.Wait()
	close(s.queue)
	<-stored
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) serveUDP(ctx context.Context, conn *net.UDPConn) error {
	buf := make([]byte, 65536)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading syslog over UDP: %w", err)
		}
		s.accept(buf[:n], from.Addr().Unmap(), "udp")
	}
}

func (s *Server) serveTCP(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accepting syslog over TCP: %w", err)
		}
		src := addrOf(c.RemoteAddr())
		if !s.openConn(src) {
			s.stats.dropConn()
			c.Close()
			continue
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		wg.Go(func() {
			defer stop()
			defer s.closeConn(src)
			defer c.Close()
			s.readTCP(c, src)
		})
	}
}

// openConn admits a TCP connection from src within the caps.
func (s *Server) openConn(src netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := 0
	for _, n := range s.conns {
		total += n
	}
	if total >= s.opts.MaxConns || s.conns[src] >= s.opts.MaxConnsPerSource {
		return false
	}
	s.conns[src]++
	s.stats.conns(total + 1)
	return true
}

func (s *Server) closeConn(src netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns[src]--; s.conns[src] <= 0 {
		delete(s.conns, src)
	}
	total := 0
	for _, n := range s.conns {
		total += n
	}
	s.stats.conns(total)
}

func (s *Server) readTCP(c net.Conn, src netip.Addr) {
	r := bufio.NewReaderSize(c, MaxMessage+16)
	for {
		// The kernel's clock, not opts.Now: a deadline is wall time.
		c.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
		b, err := readFrame(r)
		if err != nil {
			if errors.Is(err, ErrFrame) {
				s.log.Debug("syslog TCP connection closed: bad framing", "source", src, "err", err)
				s.stats.count("tcp", "malformed")
			}
			return
		}
		s.accept(b, src, "tcp")
	}
}

// accept parses one message, applies the source's rate and queues it.
func (s *Server) accept(b []byte, src netip.Addr, proto string) {
	now := s.opts.Now()
	if !s.limit.Allow(src) {
		s.stats.count(proto, "rate_limited")
		return
	}
	m, err := Parse(b, now)
	if err != nil {
		s.stats.count(proto, "malformed")
		return
	}
	select {
	case s.queue <- Received{Message: m, Source: src, Proto: proto, Received: now}:
		s.stats.count(proto, "accepted")
	default:
		s.stats.count(proto, "queue_full")
	}
}

// store hands queued messages to the sink in batches until the queue closes.
func (s *Server) store() {
	const maxBatch = 256
	batch := make([]Received, 0, maxBatch)
	for r := range s.queue {
		batch = append(batch[:0], r)
	more:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		// Not the serve context: what was accepted is stored even while stopping.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := s.sink.StoreSyslog(ctx, batch); err != nil {
			s.log.Error("storing syslog messages", "messages", len(batch), "err", err)
			s.stats.storeFailed(len(batch))
		}
		cancel()
	}
}

func addrOf(a net.Addr) netip.Addr {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
