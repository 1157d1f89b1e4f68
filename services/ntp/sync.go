package ntp

import (
	"cmp"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"kiln.dev/kiln/services/metrics"
)

// Clock adjusts the system clock.
type Clock interface {
	// Adjust corrects the clock by offset: at once when step is true,
	// else gradually (slewed); maxErr is the error bound after the
	// correction, which the clock may record (the kernel then counts itself
	// synchronized).
	Adjust(offset time.Duration, step bool, maxErr time.Duration) error
}

// SyncOptions configures the syncer.
type SyncOptions struct {
	// Servers are upstream servers as host:port.
	Servers []string
	// Poll is the time between two polls (DefaultPoll when 0).
	Poll time.Duration
	// Samples is the number of queries per server and poll (4 when 0);
	// the one with the shortest round trip counts (a minimal clock filter:
	// the least delayed sample is the least distorted by queueing).
	Samples int
	// Spacing is the time between two queries to one server (2 s when 0,
	// the minimum public servers accept before sending RATE).
	Spacing time.Duration
	// Timeout bounds one query (1 s when 0).
	Timeout time.Duration
	// StepThreshold is the offset above which the clock is stepped rather
	// than slewed (DefaultStepThreshold when 0).
	StepThreshold time.Duration
	// Clock is adjusted; required.
	Clock Clock
	// State receives the status after each poll; required.
	State *State
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Resolver resolves server names; net.DefaultResolver when nil.
	Resolver *net.Resolver
	// Metrics receives the syncer's families; nil counts nothing.
	Metrics *metrics.Registry
}

// Defaults of SyncOptions.
const (
	DefaultPoll = 64 * time.Second
	// DefaultStepThreshold is ntpd's step threshold: an offset above it is
	// a wrong clock (a board without RTC battery, a VM restored from a
	// snapshot), not drift, and slewing it at the kernel's 500 ppm would
	// take over four minutes per 128 ms.
	DefaultStepThreshold = 128 * time.Millisecond
)

// ErrNoServer is returned by Poll when no upstream gave a usable sample.
var ErrNoServer = errors.New("no usable NTP server")

// Syncer keeps the system clock from upstream servers and publishes the
// result in a State.
type Syncer struct {
	opts  SyncOptions
	log   *slog.Logger
	stats *syncMetrics

	// mu guards adjusted and pending.
	mu sync.Mutex
	// adjusted is true once the clock has been adjusted since start.
	adjusted bool
	// pending is the number of consecutive polls whose offset was above
	// the step threshold after the first adjustment.
	pending int
}

// NewSyncer returns a syncer.
func NewSyncer(o SyncOptions, log *slog.Logger) *Syncer {
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.Samples <= 0 {
		o.Samples = 4
	}
	if o.Spacing <= 0 {
		o.Spacing = 2 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.StepThreshold <= 0 {
		o.StepThreshold = DefaultStepThreshold
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	s := &Syncer{opts: o, log: log}
	s.stats = newSyncMetrics(o.Metrics)
	return s
}

// Run polls every Poll until ctx is cancelled. A failed poll is logged and
// retried at the next one; the served status ages meanwhile (Status.At).
func (s *Syncer) Run(ctx context.Context) error {
	for {
		if _, err := s.Poll(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("NTP poll failed; kiln's clock keeps its last correction", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.opts.Poll):
		}
	}
}

// Poll queries every server once (Samples queries each), selects one,
// corrects the clock by its offset and publishes the new status.
func (s *Syncer) Poll(ctx context.Context) (Status, error) {
	samples := make([]Sample, len(s.opts.Servers))
	errs := make([]error, len(s.opts.Servers))
	var wg sync.WaitGroup
	for i, srv := range s.opts.Servers {
		wg.Go(func() { samples[i], errs[i] = s.sampleServer(ctx, srv) })
	}
	wg.Wait()
	var good []Sample
	for i, err := range errs {
		if err != nil {
			s.log.Info("NTP server unusable", "server", s.opts.Servers[i], "err", err)
			continue
		}
		good = append(good, samples[i])
	}
	best, err := choose(good, s.opts.StepThreshold)
	if err != nil {
		return Status{}, fmt.Errorf("%w: %w", ErrNoServer, errors.Join(append(errs, err)...))
	}
	return s.correct(best)
}

// sampleServer resolves srv and returns its least delayed sample.
func (s *Syncer) sampleServer(ctx context.Context, srv string) (Sample, error) {
	host, port, err := net.SplitHostPort(srv)
	if err != nil {
		return Sample{}, err
	}
	addrs, err := s.opts.Resolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return Sample{}, fmt.Errorf("resolving %s: %w", host, err)
	}
	// One address per server (a pool name gives several; asking one is
	// polite), IPv4 first: kiln's networks are IPv4, IPv6 may not route.
	addr := addrs[0].Unmap()
	if i := slices.IndexFunc(addrs, func(a netip.Addr) bool { return a.Unmap().Is4() }); i >= 0 {
		addr = addrs[i].Unmap()
	}
	target := net.JoinHostPort(addr.String(), port)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", target)
	if err != nil {
		return Sample{}, fmt.Errorf("NTP server %s: %w", srv, err)
	}
	defer conn.Close()
	ap, _ := netip.ParseAddrPort(target)
	var best Sample
	var errs []error
	for i := range s.opts.Samples {
		if i > 0 {
			select {
			case <-ctx.Done():
				return Sample{}, ctx.Err()
			case <-time.After(s.opts.Spacing):
			}
		}
		qctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
		sm, err := query(qctx, conn, s.opts.Now)
		cancel()
		s.stats.query(err)
		if errors.Is(err, ErrKissOfDeath) {
			return Sample{}, fmt.Errorf("NTP server %s: %w", srv, err)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if best.Server == (netip.AddrPort{}) || sm.Delay < best.Delay {
			best = sm
			best.Server = ap
		}
	}
	if best.Server == (netip.AddrPort{}) {
		return Sample{}, fmt.Errorf("NTP server %s: %w", srv, errors.Join(errs...))
	}
	return best, nil
}

// choose picks the sample to follow. With three or more servers, those
// whose offsets are more than threshold away from the median are
// falsetickers and dropped; if that leaves no majority, none is trusted.
// Of the rest, the one with the smallest root distance wins.
func choose(ss []Sample, threshold time.Duration) (Sample, error) {
	if len(ss) == 0 {
		return Sample{}, errors.New("no server answered with a usable sample")
	}
	if len(ss) >= 3 {
		offs := make([]time.Duration, len(ss))
		for i, s := range ss {
			offs[i] = s.Offset
		}
		slices.Sort(offs)
		median := offs[len(offs)/2]
		var agree []Sample
		for _, s := range ss {
			if (s.Offset - median).Abs() <= threshold {
				agree = append(agree, s)
			}
		}
		if 2*len(agree) <= len(ss) {
			return Sample{}, fmt.Errorf("servers disagree: no majority within %s of the median offset %s", threshold, median)
		}
		ss = agree
	}
	return slices.MinFunc(ss, func(a, b Sample) int { return cmp.Compare(a.RootDistance(), b.RootDistance()) }), nil
}

// Actions of a correction.
const (
	actionSlew  = "slew"
	actionStep  = "step"
	actionDefer = "deferred"
)

// decide says how to correct offset: the first correction since start steps
// when the offset is above the threshold; later ones slew, except an offset
// above the threshold seen on two polls in a row, which steps (one bad
// sample never jumps the clock; a clock that really jumped is fixed one
// poll later). pending counts the polls above the threshold before this one.
func decide(offset, threshold time.Duration, adjusted bool, pending int) string {
	switch {
	case offset.Abs() <= threshold:
		return actionSlew
	case !adjusted || pending >= 1:
		return actionStep
	}
	return actionDefer
}

// correct adjusts the clock by the sample's offset and publishes the status.
func (s *Syncer) correct(sm Sample) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	action := decide(sm.Offset, s.opts.StepThreshold, s.adjusted, s.pending)
	s.stats.offset(sm.Offset)
	s.stats.adjust(action)
	if action == actionDefer {
		s.pending++
		s.log.Warn("NTP offset above the step threshold; stepping if the next poll confirms it",
			"server", sm.Server, "offset", sm.Offset, "threshold", s.opts.StepThreshold)
		return s.opts.State.Get(), nil
	}
	// The error bound after the correction: the upstream's, this sample's,
	// and what a slew has yet to correct.
	disp := sm.RootDispersion + sm.Dispersion
	if action == actionSlew {
		disp += sm.Offset.Abs()
	}
	st := Status{
		Synced: true, Leap: sm.Leap, Stratum: sm.Stratum + 1, RefID: refID(sm.Server.Addr()),
		RootDelay: sm.RootDelay + sm.Delay, RootDispersion: disp, Upstream: sm.Server,
	}
	if err := s.opts.Clock.Adjust(sm.Offset, action == actionStep, st.RootDelay/2+st.RootDispersion); err != nil {
		return Status{}, fmt.Errorf("adjusting the clock by %s: %w", sm.Offset, err)
	}
	s.adjusted, s.pending = true, 0
	st.Updated = s.opts.Now()
	s.opts.State.Set(st)
	if action == actionStep {
		s.log.Info("NTP stepped the clock", "server", sm.Server, "offset", sm.Offset, "stratum", st.Stratum)
	} else {
		s.log.Debug("NTP slewing the clock", "server", sm.Server, "offset", sm.Offset, "stratum", st.Stratum)
	}
	return st, nil
}

// refID identifies an upstream server (RFC 5905 section 7.3): its IPv4
// address, or the first four bytes of the MD5 of its IPv6 address.
func refID(a netip.Addr) [4]byte {
	a = a.Unmap()
	if a.Is4() {
		return a.As4()
	}
	b := a.As16()
	sum := md5.Sum(b[:])
	return [4]byte(sum[:4])
}
