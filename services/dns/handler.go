package dns

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"

	"kiln.dev/kiln/services/metrics"
)

// Handler answers DNS questions from the current zone and forwards the rest.
type Handler struct {
	zone      atomic.Pointer[Zone]
	fwd       Exchanger // nil: no forwarding, outside names are REFUSED
	cache     *cache
	allow     []netip.Prefix
	maxUDP    int
	fwdTimout time.Duration
	flight    singleflight.Group
	log       *slog.Logger
	now       func() time.Time
	stats     *dnsMetrics // nil counts nothing
	// base is cancelled when the server stops, ending forwarded exchanges.
	base context.Context

	// warnMu guards lastWarn.
	warnMu   sync.Mutex
	lastWarn time.Time
}

// HandlerOptions configures a Handler.
type HandlerOptions struct {
	// Forwarder answers names outside the zone; nil refuses them.
	Forwarder Exchanger
	// AllowRecursion lists the clients that may use the forwarder.
	AllowRecursion []netip.Prefix
	// CacheSize bounds the forwarding cache (entries); 0 disables it.
	CacheSize int
	// MaxCacheTTL caps how long an answer stays cached.
	MaxCacheTTL time.Duration
	// MaxUDPSize caps UDP answers even when a client offers a larger buffer.
	MaxUDPSize int
	// ForwardTimeout bounds one forwarded question, all upstreams included.
	ForwardTimeout time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Metrics receives the handler's families; nil counts nothing.
	Metrics *metrics.Registry
}

// NewHandler returns a handler serving an empty zone until SetZone is called.
// ctx bounds forwarded exchanges.
func NewHandler(ctx context.Context, o HandlerOptions, log *slog.Logger) *Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxUDPSize < dns.MinMsgSize {
		o.MaxUDPSize = 1232
	}
	if o.ForwardTimeout <= 0 {
		o.ForwardTimeout = 5 * time.Second
	}
	if o.MaxCacheTTL <= 0 {
		o.MaxCacheTTL = time.Hour
	}
	h := &Handler{
		fwd:       o.Forwarder,
		cache:     newCache(o.CacheSize, o.MaxCacheTTL, o.Now),
		allow:     o.AllowRecursion,
		maxUDP:    o.MaxUDPSize,
		fwdTimout: o.ForwardTimeout,
		log:       log,
		now:       o.Now,
		base:      ctx,
	}
	h.stats = newMetrics(o.Metrics, h.cache)
	empty, _, _ := BuildZone(ZoneSpec{}, nil)
	h.zone.Store(empty)
	return h
}

// SetZone replaces the zone answers come from.
func (h *Handler) SetZone(z *Zone) { h.zone.Store(z) }

// ServeDNS implements dns.Handler.
func (h *Handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	client, tcp := peer(w.RemoteAddr())
	resp := h.Respond(client, tcp, r)
	h.stats.answered(tcp, r, resp)
	if resp == nil {
		return
	}
	if err := w.WriteMsg(resp); err != nil {
		h.log.Debug("writing DNS answer", "client", client, "err", err)
	}
}

func peer(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), false
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), true
	}
	return netip.Addr{}, false
}

// Respond builds the answer to r from client (over TCP when tcp is set), or
// nil when the message must be dropped.
func (h *Handler) Respond(client netip.Addr, tcp bool, r *dns.Msg) *dns.Msg {
	if r == nil || r.Response {
		return nil
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Compress = true
	opt := r.IsEdns0()
	size := dns.MinMsgSize
	if tcp {
		size = dns.MaxMsgSize
	} else if opt != nil {
		size = max(dns.MinMsgSize, min(int(opt.UDPSize()), h.maxUDP))
	}
	finish := func() *dns.Msg {
		if opt != nil {
			m.SetEdns0(uint16(h.maxUDP), opt.Do())
		}
		m.Truncate(size)
		return m
	}
	if r.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return finish()
	}
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return finish()
	}
	if opt != nil && opt.Version() != 0 {
		m.Rcode = dns.RcodeBadVers
		return finish()
	}
	q := r.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY ||
		q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		m.Rcode = dns.RcodeRefused
		return finish()
	}
	recursion := h.mayRecurse(client)
	m.RecursionAvailable = recursion && h.fwd != nil

	if a := h.zone.Load().Lookup(q.Name, q.Qtype); a.Authoritative {
		m.Authoritative = true
		m.Rcode = a.Rcode
		m.Answer, m.Ns, m.Extra = a.Answer, a.Ns, a.Extra
		return finish()
	}
	if !recursion || h.fwd == nil {
		m.Rcode = dns.RcodeRefused
		return finish()
	}
	up := h.forward(q, opt != nil && opt.Do(), r.CheckingDisabled)
	if up == nil {
		m.Rcode = dns.RcodeServerFailure
		return finish()
	}
	m.Rcode = up.Rcode
	m.Truncated = up.Truncated
	m.Answer, m.Ns = up.Answer, up.Ns
	for _, rr := range up.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			m.Extra = append(m.Extra, rr)
		}
	}
	return finish()
}

func (h *Handler) mayRecurse(client netip.Addr) bool {
	for _, p := range h.allow {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

// forward answers q from the cache or the upstreams; nil on failure. The
// result is the caller's to modify.
func (h *Handler) forward(q dns.Question, do, cd bool) *dns.Msg {
	key := cacheKey(q, do, cd)
	m := h.cache.get(key)
	h.stats.cache(m != nil)
	if m != nil {
		return m
	}
	v, err, _ := h.flight.Do(key, func() (any, error) {
		if m := h.cache.get(key); m != nil {
			return m, nil
		}
		fq := new(dns.Msg)
		fq.Id = dns.Id()
		fq.RecursionDesired = true
		fq.CheckingDisabled = cd
		fq.Question = []dns.Question{q}
		fq.SetEdns0(1232, do)
		ctx, cancel := context.WithTimeout(h.base, h.fwdTimout)
		defer cancel()
		up, err := h.fwd.Exchange(ctx, fq)
		if err != nil {
			return nil, err
		}
		if up.Id != fq.Id || len(up.Question) != 1 || !sameQuestion(up.Question[0], q) {
			// An upstream answering another question is not trusted.
			return nil, errMismatch
		}
		h.cache.put(key, up)
		return up, nil
	})
	if err != nil {
		h.stats.upstreamError()
		h.warnUpstream(q, err)
		return nil
	}
	return v.(*dns.Msg).Copy()
}

var errMismatch = errors.New("upstream answered a different question")

func sameQuestion(a, b dns.Question) bool {
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && dns.CanonicalName(a.Name) == dns.CanonicalName(b.Name)
}

// warnUpstream logs forwarding failures at most every 30 seconds.
func (h *Handler) warnUpstream(q dns.Question, err error) {
	h.warnMu.Lock()
	now := h.now()
	quiet := now.Sub(h.lastWarn) < 30*time.Second
	if !quiet {
		h.lastWarn = now
	}
	h.warnMu.Unlock()
	if quiet {
		h.log.Debug("forwarding failed", "name", q.Name, "type", dns.TypeToString[q.Qtype], "err", err)
		return
	}
	h.log.Warn("forwarding failed; answering SERVFAIL (check provisioning.upstream_dns and the uplink)",
		"name", q.Name, "type", dns.TypeToString[q.Qtype], "err", err)
}
