package syslog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
)

// Run is the syslog service's entry point: UDP and TCP on syslog.listen,
// messages stored in the machine database, retention every hour.
func Run(ctx context.Context, env svc.Env) error {
	cfg := env.Config.Syslog
	st, err := store.Open(ctx, store.Path(env.StateDir))
	if err != nil {
		return fmt.Errorf("opening the machine database: %w", err)
	}
	defer st.Close()
	udp, tcp, err := Listen(cfg.ListenAddr())
	if err != nil {
		return err
	}
	rate := float64(cfg.PerSource())
	srv := New(Options{Rate: rate, Burst: 5 * rate, Metrics: env.Metrics}, NewStoreSink(st, time.Now), env.Logger)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(ctx, udp, tcp, env.Ready) })
	g.Go(func() error { return retain(ctx, st, cfg.Age(), cfg.SizeBytes(), env.Logger) })
	return g.Wait()
}

// Listen binds the UDP and TCP sockets of addr.
func Listen(addr string) (*net.UDPConn, net.Listener, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("syslog listen address %q: %w", addr, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, nil, fmt.Errorf("binding syslog UDP socket %s: %w", addr, err)
	}
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		udp.Close()
		return nil, nil, fmt.Errorf("binding syslog TCP socket %s: %w", addr, err)
	}
	return udp, tcp, nil
}

// retain prunes the stored messages every hour (and at start).
func retain(ctx context.Context, st *store.Store, age time.Duration, size int64, log *slog.Logger) error {
	for {
		n, err := st.PruneSyslog(ctx, time.Now().Add(-age), size)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("syslog retention", "err", err)
		case n > 0:
			log.Info("syslog retention removed messages", "removed", n, "max_age", age, "max_bytes", size)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Hour):
		}
	}
}

// StoreSink stores messages in the machine database, each attributed to
// the machine holding its source address and to that machine's boot
// session. Attributions are cached for a few seconds: a booting machine
// sends hundreds of lines, and its lease does not change between them.
type StoreSink struct {
	st  *store.Store
	now func() time.Time

	// mu guards cache.
	mu    sync.Mutex
	cache map[netip.Addr]attribution
}

type attribution struct {
	mac, host string
	session   int64
	until     time.Time
}

// attributionTTL is how long an address's machine and session are reused.
// A reboot's new session therefore shows from its first message at most
// this late: the first lines after DHCP usually come later than that.
const attributionTTL = 5 * time.Second

// NewStoreSink returns a sink writing to st.
func NewStoreSink(st *store.Store, now func() time.Time) *StoreSink {
	return &StoreSink{st: st, now: now, cache: map[netip.Addr]attribution{}}
}

// StoreSyslog attributes and stores a batch.
func (s *StoreSink) StoreSyslog(ctx context.Context, batch []Received) error {
	ms := make([]store.SyslogMessage, len(batch))
	for i, r := range batch {
		a, err := s.attribute(ctx, r.Source, r.Received)
		if err != nil {
			return err
		}
		ms[i] = store.SyslogMessage{
			Received: r.Received, Sent: r.Time, Source: r.Source, Proto: r.Proto,
			MAC: a.mac, Host: a.host, Session: a.session,
			Facility: r.Facility, Severity: r.Severity, Hostname: r.Hostname, App: r.App, ProcID: r.ProcID, MsgID: r.MsgID, Text: r.Text,
		}
	}
	return s.st.AddSyslog(ctx, ms)
}

func (s *StoreSink) attribute(ctx context.Context, src netip.Addr, at time.Time) (attribution, error) {
	now := s.now()
	s.mu.Lock()
	a, ok := s.cache[src]
	s.mu.Unlock()
	if ok && now.Before(a.until) {
		return a, nil
	}
	mac, host, err := s.st.MachineByIP(ctx, src)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return attribution{}, fmt.Errorf("attributing %s: %w", src, err)
	}
	a = attribution{mac: mac, host: host, until: now.Add(attributionTTL)}
	if mac != "" {
		offers, err := s.st.DHCPOffers(ctx, mac, at, sessionLookback)
		if err != nil {
			return attribution{}, fmt.Errorf("finding the boot session of %s: %w", mac, err)
		}
		a.session = SessionStart(offers)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cache) > 4096 {
		clear(s.cache) // bounded: sources are the LAN's machines
	}
	s.cache[src] = a
	return a, nil
}
