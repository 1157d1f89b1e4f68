package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/errgroup"

	"kiln.dev/kiln/services/metrics"
)

// Source gives the records the zone is built from.
type Source interface {
	// Version changes whenever the records may have changed; it must be cheap.
	Version(ctx context.Context) (uint64, error)
	// Records returns every host to publish, reservations before leases.
	Records(ctx context.Context) ([]Record, error)
}

// Options configures the DNS server.
type Options struct {
	// Listen is the UDP and TCP address, e.g. ":53".
	Listen string
	// Domain is the site zone, e.g. "lab.example".
	Domain string
	// Subnets give the reverse zones and, unless AllowRecursion is set, the
	// clients that may use forwarding.
	Subnets []netip.Prefix
	// NSName is the server's own name in the zone (default "ns").
	NSName string
	// NSAddrs are published as A records of NSName.
	NSAddrs []netip.Addr
	// Upstreams are "ip" or "ip:port" resolvers names outside the zone go to.
	Upstreams []string
	// AllowRecursion lists clients that may use forwarding; nil means
	// Subnets plus loopback.
	AllowRecursion []netip.Prefix
	// TTL of zone records, NegativeTTL of NXDOMAIN/NODATA answers.
	TTL, NegativeTTL time.Duration
	// CacheSize bounds the forwarding cache in entries; MaxCacheTTL caps TTLs.
	CacheSize   int
	MaxCacheTTL time.Duration
	// MaxUDPSize caps UDP answers (EDNS0 buffer size offered).
	MaxUDPSize int
	// PollInterval is how often Source.Version is checked.
	PollInterval time.Duration
	// UpstreamTimeout bounds one exchange with one upstream.
	UpstreamTimeout time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Metrics receives the service's families; nil counts nothing.
	Metrics *metrics.Registry
}

// DefaultOptions returns the defaults used for unset fields.
func DefaultOptions() Options {
	return Options{
		Listen:          ":53",
		NSName:          "ns",
		TTL:             60 * time.Second,
		NegativeTTL:     30 * time.Second,
		CacheSize:       10000,
		MaxCacheTTL:     time.Hour,
		MaxUDPSize:      1232,
		PollInterval:    time.Second,
		UpstreamTimeout: 2 * time.Second,
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Listen == "" {
		o.Listen = d.Listen
	}
	if o.NSName == "" {
		o.NSName = d.NSName
	}
	if o.TTL <= 0 {
		o.TTL = d.TTL
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = d.NegativeTTL
	}
	if o.CacheSize < 0 {
		o.CacheSize = 0
	} else if o.CacheSize == 0 {
		o.CacheSize = d.CacheSize
	}
	if o.MaxCacheTTL <= 0 {
		o.MaxCacheTTL = d.MaxCacheTTL
	}
	if o.MaxUDPSize < dns.MinMsgSize {
		o.MaxUDPSize = d.MaxUDPSize
	}
	if o.PollInterval <= 0 {
		o.PollInterval = d.PollInterval
	}
	if o.UpstreamTimeout <= 0 {
		o.UpstreamTimeout = d.UpstreamTimeout
	}
	if o.AllowRecursion == nil {
		o.AllowRecursion = append(slices.Clone(o.Subnets),
			netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Listen binds UDP and TCP on the same address. With port 0 it picks a port
// free for both.
func Listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing DNS listen address %q: %w", addr, err)
	}
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("binding DNS UDP %s: %w", addr, err)
		}
		p := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || attempt == 10 {
			return nil, nil, fmt.Errorf("binding DNS TCP %s: %w", addr, err)
		}
	}
}

// Server is the DNS service: a Handler fed by a zone refresher.
type Server struct {
	opts    Options
	src     Source
	log     *slog.Logger
	handler *Handler

	// lastVersion/lastSerial/lastWarn/built are owned by the refresh loop.
	lastVersion uint64
	lastSerial  uint32
	lastWarn    []string
	lastErr     string
	built       bool
	lastBuild   time.Time
}

// maxZoneAge rebuilds the zone even when the version did not move, so leases
// that expire (which do not bump the version) leave the zone.
const maxZoneAge = time.Minute

// New validates the options and returns a server; ctx bounds forwarding.
func New(ctx context.Context, o Options, src Source, log *slog.Logger) (*Server, error) {
	o = o.withDefaults()
	var fwd Exchanger
	if len(o.Upstreams) > 0 {
		u, err := newUpstreams(o.Upstreams, o.UpstreamTimeout)
		if err != nil {
			return nil, fmt.Errorf("configuring DNS forwarding: %w", err)
		}
		fwd = u
	}
	if _, _, err := BuildZone(o.zoneSpec(0), nil); err != nil {
		return nil, err
	}
	h := NewHandler(ctx, HandlerOptions{
		Forwarder:      fwd,
		AllowRecursion: o.AllowRecursion,
		CacheSize:      o.CacheSize,
		MaxCacheTTL:    o.MaxCacheTTL,
		MaxUDPSize:     o.MaxUDPSize,
		ForwardTimeout: 2 * o.UpstreamTimeout * time.Duration(max(1, len(o.Upstreams))),
		Now:            o.Now,
		Metrics:        o.Metrics,
	}, log)
	return &Server{opts: o, src: src, log: log, handler: h}, nil
}

func (o Options) zoneSpec(serial uint32) ZoneSpec {
	return ZoneSpec{
		Domain:      o.Domain,
		Subnets:     o.Subnets,
		NSName:      o.NSName,
		NSAddrs:     o.NSAddrs,
		TTL:         uint32(o.TTL / time.Second),
		NegativeTTL: uint32(o.NegativeTTL / time.Second),
		Serial:      serial,
	}
}

// Handler returns the server's DNS handler.
func (s *Server) Handler() *Handler { return s.handler }

// Serve answers on pc (UDP) and ln (TCP) until ctx is cancelled. ready is
// called once the first zone is loaded and both sockets serve.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener, ready func()) error {
	s.refresh(ctx)
	udp := &dns.Server{PacketConn: pc, Handler: s.handler, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second}
	tcp := &dns.Server{Listener: ln, Handler: s.handler, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		IdleTimeout: func() time.Duration { return 8 * time.Second }, MaxTCPQueries: 128}
	started := make(chan struct{}, 2)
	udp.NotifyStartedFunc = func() { started <- struct{}{} }
	tcp.NotifyStartedFunc = func() { started <- struct{}{} }

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveErr("UDP", udp.ActivateAndServe()) })
	g.Go(func() error { return serveErr("TCP", tcp.ActivateAndServe()) })
	g.Go(func() error {
		for i := 0; i < 2; i++ {
			select {
			case <-started:
			case <-gctx.Done():
				return nil
			}
		}
		if ready != nil {
			ready()
		}
		s.log.Info("DNS serving", "addr", pc.LocalAddr().String(), "domain", s.opts.Domain, "upstreams", s.opts.Upstreams)
		t := time.NewTicker(s.opts.PollInterval)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				s.refresh(gctx)
			}
		}
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		// Shutdown errors only say a server was not running (it failed to start).
		_ = udp.ShutdownContext(sctx)
		_ = tcp.ShutdownContext(sctx)
		return nil
	})
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func serveErr(proto string, err error) error {
	if err == nil {
		return errors.New("DNS " + proto + " server stopped")
	}
	return fmt.Errorf("serving DNS over %s: %w", proto, err)
}

// refresh rebuilds the zone when the source's version moved.
func (s *Server) refresh(ctx context.Context) {
	var v uint64
	var recs []Record
	var err error
	if s.src != nil {
		v, err = s.src.Version(ctx)
		if err == nil && s.built && v == s.lastVersion && s.opts.Now().Sub(s.lastBuild) < maxZoneAge {
			return
		}
		if err == nil {
			recs, err = s.src.Records(ctx)
		}
	}
	if err != nil {
		if ctx.Err() == nil && err.Error() != s.lastErr {
			s.log.Warn("reading host records; keeping the previous zone", "err", err)
		}
		s.lastErr = err.Error()
		if s.built {
			return
		}
	} else {
		s.lastErr = ""
	}
	serial := uint32(s.opts.Now().Unix())
	if serial <= s.lastSerial {
		serial = s.lastSerial + 1
	}
	z, warns, berr := BuildZone(s.opts.zoneSpec(serial), recs)
	if berr != nil {
		s.log.Error("building zone", "err", berr)
		return
	}
	if !slices.Equal(warns, s.lastWarn) {
		for _, w := range warns {
			s.log.Warn("zone: " + w)
		}
		s.lastWarn = warns
	}
	s.handler.SetZone(z)
	s.lastSerial = serial
	if err == nil {
		s.lastVersion, s.built, s.lastBuild = v, true, s.opts.Now()
	}
	s.log.Debug("zone built", "serial", serial, "version", v, "records", len(recs))
}
