package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/internal/bootnonce"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
)

// ErrForeignServer is returned by Run when another DHCP server answers on a
// subnet kiln should serve authoritatively and the policy is refuse.
var ErrForeignServer = errors.New("another DHCP server answers on the link")

// options are Run's tunables; tests shorten them.
type options struct {
	// foreignWait is how long to listen for another server's OFFER. Longer than
	// dnsmasq's 3 s ping check, which delays its first offer to a new client.
	foreignWait  time.Duration
	probeTimeout time.Duration // per address ARP conflict probe
	rate, burst  float64       // per-MAC packet rate limit
	// enrolRate, enrolBurst limit enrolling unknown machines (all MACs
	// together); maxEnrolled caps the unknown-* hosts kiln creates.
	enrolRate, enrolBurst float64
	maxEnrolled           int
	now                   func() time.Time
}

func defaultOptions() options {
	return options{foreignWait: 4 * time.Second, probeTimeout: 500 * time.Millisecond, rate: 2, burst: 10,
		enrolRate: 5, enrolBurst: 50, maxEnrolled: 4096, now: time.Now}
}

// Run serves DHCP for the provisioning subnets until ctx is done.
func Run(ctx context.Context, env svc.Env) error {
	return run(ctx, env, defaultOptions())
}

func run(ctx context.Context, env svc.Env, o options) error {
	log := env.Logger
	if log == nil {
		log = slog.Default()
	}
	ready := env.Ready
	if ready == nil {
		ready = func() {}
	}
	p := env.Config.Provisioning
	db, err := store.Open(ctx, store.Path(env.StateDir))
	if err != nil {
		return err
	}
	defer db.Close()
	nonces, err := bootnonce.LoadKey(filepath.Join(env.StateDir, store.KeyFileName))
	if err != nil {
		return fmt.Errorf("loading the boot nonce key: %w", err)
	}
	srv := &server{log: log, db: db, now: o.now, nonces: nonces, domain: p.Domain, dnsOn: env.Config.Enabled("dns", true), ntpOn: env.Config.Enabled("ntp", env.Config.NTPByDefault()),
		syslogOn: env.Config.Enabled("syslog", env.Config.SyslogByDefault()), httpPort: p.HTTPBootPort(),
		enrolRate: newLimiter(o.enrolRate, o.enrolBurst, 1, o.now), maxEnrolled: o.maxEnrolled}
	for i, c := range p.Subnets {
		if c.Mode != config.ModeOff {
			srv.subnets = append(srv.subnets, newSubnet(i, c))
		}
	}
	srv.metrics = newMetrics(env.Registry(), db, srv.subnets, o.now)
	if len(srv.subnets) == 0 {
		log.Info("no provisioning subnets to serve (provisioning.subnets is empty or all off)")
		ready()
		<-ctx.Done()
		return nil
	}

	// Interfaces and kiln's address on each directly attached subnet.
	ifaddr := map[string]netip.Addr{}
	relayed := false
	for _, sub := range srv.subnets {
		if sub.cfg.Interface == "" {
			relayed = true
			continue
		}
		self, first, err := interfaceAddr(sub.cfg.Interface, sub.prefix)
		if err != nil {
			return fmt.Errorf("%s.interface: %w", sub.field, err)
		}
		if !self.IsValid() {
			return fmt.Errorf("%s.interface: %s has no IPv4 address in %s: give it one (e.g. %s) or fix the cidr",
				sub.field, sub.cfg.Interface, sub.prefix, exampleAddr(sub.prefix))
		}
		sub.self = self
		if _, ok := ifaddr[sub.cfg.Interface]; !ok {
			ifaddr[sub.cfg.Interface] = first
		}
	}

	if err := checkForeign(ctx, log, srv.subnets, o.foreignWait); err != nil {
		return err
	}

	// Sockets: :67 per interface, :4011 where proxy subnets are, and one
	// unbound :67 for relayed subnets.
	var ls []*listener
	defer func() {
		for _, l := range ls {
			l.conn.Close()
		}
	}()
	opened := map[string]bool{}
	for _, sub := range srv.subnets {
		name := sub.cfg.Interface
		if name == "" {
			continue
		}
		if !opened[name] {
			l, err := listen(name, ifaddr[name], dhcpv4.ServerPort)
			if err != nil {
				return fmt.Errorf("%s.interface: %w", sub.field, err)
			}
			ls = append(ls, l)
			opened[name] = true
		}
		if sub.cfg.Mode == config.ModeProxy && !opened[name+":4011"] {
			l, err := listen(name, ifaddr[name], pxePort)
			if err != nil {
				return fmt.Errorf("%s: %w", sub.field, err)
			}
			ls = append(ls, l)
			opened[name+":4011"] = true
		}
	}
	if relayed {
		l, err := listen("", netip.Addr{}, dhcpv4.ServerPort)
		if err != nil {
			return fmt.Errorf("relayed subnets: %w", err)
		}
		ls = append(ls, l)
	}

	// Conflict probes: ARP on directly attached authoritative subnets, ping
	// on relayed ones.
	probers := map[string]*arpProber{}
	defer func() {
		for _, p := range probers {
			p.close()
		}
	}()
	var pinger *icmpProber
	defer func() {
		if pinger != nil {
			pinger.close()
		}
	}()
	for _, sub := range srv.subnets {
		if sub.cfg.Mode != config.ModeAuthoritative || !sub.cfg.Probe() {
			continue
		}
		if sub.cfg.Interface == "" {
			if pinger == nil {
				if pinger, err = newICMPProber(o.probeTimeout); err != nil {
					return err
				}
			}
			sub.probe = pinger
			continue
		}
		pr, ok := probers[sub.cfg.Interface]
		if !ok {
			pr, err = newARPProber(sub.cfg.Interface, sub.self, o.probeTimeout)
			if err != nil {
				return err
			}
			probers[sub.cfg.Interface] = pr
		}
		sub.probe = pr
	}

	pl := newPool(log, srv, newLimiter(o.rate, o.burst, limiterMACs, o.now))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); pl.run(ctx) }()
	errc := make(chan error, len(ls))
	for _, l := range ls {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- pl.serve(l) }()
	}
	for _, sub := range srv.subnets {
		log.Info("serving subnet", "subnet", sub.cfg.Name, "mode", sub.cfg.Mode, "interface", sub.cfg.Interface,
			"cidr", sub.prefix, "server", sub.self)
	}
	ready()
	select {
	case <-ctx.Done():
		err = nil
	case err = <-errc:
	}
	cancel()
	for _, l := range ls {
		l.conn.Close()
	}
	wg.Wait()
	return err
}

// checkForeign probes every directly attached authoritative subnet for
// another DHCP server, all at once, and applies each subnet's policy.
func checkForeign(ctx context.Context, log *slog.Logger, subs []*subnet, wait time.Duration) error {
	type result struct {
		sub     *subnet
		servers []ForeignServer
		err     error
	}
	var probe []*subnet
	seen := map[string]bool{}
	for _, sub := range subs {
		if sub.cfg.Mode == config.ModeAuthoritative && sub.cfg.Interface != "" && !seen[sub.cfg.Interface] {
			seen[sub.cfg.Interface] = true
			probe = append(probe, sub)
		}
	}
	results := make(chan result, len(probe))
	for _, sub := range probe {
		go func() {
			s, err := probeForeign(ctx, sub.cfg.Interface, wait)
			results <- result{sub, s, err}
		}()
	}
	var errs []error
	for range probe {
		r := <-results
		if r.err != nil {
			log.Warn("could not probe for other DHCP servers", "interface", r.sub.cfg.Interface, "err", r.err)
			continue
		}
		var others []string
		for _, s := range r.servers {
			if s.ServerID != r.sub.self {
				others = append(others, s.ServerID.String())
			}
		}
		if len(others) == 0 {
			continue
		}
		if r.sub.cfg.Foreign() == config.ForeignWarn {
			log.Warn("another DHCP server answers on this link; serving anyway (foreign_dhcp: warn)",
				"interface", r.sub.cfg.Interface, "servers", others)
			continue
		}
		errs = append(errs, fmt.Errorf("%w: %s on %s (subnet %s) answered a DISCOVER; kiln will not hand out addresses beside it. "+
			"Stop that server, set %s.mode: proxy to only add boot information, or %s.foreign_dhcp: warn to serve anyway",
			ErrForeignServer, strings.Join(others, ", "), r.sub.cfg.Interface, r.sub.cfg.Name, r.sub.field, r.sub.field))
	}
	return errors.Join(errs...)
}

// interfaceAddr returns the interface's address inside prefix (if any) and
// its first IPv4 address.
func interfaceAddr(name string, prefix netip.Prefix) (inPrefix, first netip.Addr, err error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("no interface %q: %w (check `ip link`)", name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("reading addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip := addrOf(ipn.IP)
		if !ip.IsValid() {
			continue
		}
		if !first.IsValid() {
			first = ip
		}
		if !inPrefix.IsValid() && prefix.Contains(ip) {
			inPrefix = ip
		}
	}
	return inPrefix, first, nil
}

func exampleAddr(p netip.Prefix) string {
	return fmt.Sprintf("%s/%d", p.Addr().Next(), p.Bits())
}
