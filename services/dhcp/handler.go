package dhcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/internal/bootnonce"
	"kiln.dev/kiln/services/store"
)

// Timing of the address bookkeeping.
const (
	offerHold = time.Minute // an offered address is kept for a known client this long
	// unknownOfferHold is the hold for a MAC without a host row: real
	// clients REQUEST within seconds; made-up MACs of a flood never do.
	unknownOfferHold = 10 * time.Second
	declineHold      = 10 * time.Minute // an address a client declined (or a probe found in use) rests this long
	// firstLease is the longest first lease of a machine the operator has
	// not registered (see leaseTime).
	firstLease = 10 * time.Minute
	maxProbes  = 3 // addresses probed per DISCOVER before giving up
)

// prober checks whether an address is in use on the network.
type prober interface {
	// Probe returns the MAC that answered for ip, or nil if nothing answered
	// within the prober's (bounded) timeout.
	Probe(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error)
}

// subnet is a served subnet with what Run resolved at start.
type subnet struct {
	cfg        config.Subnet
	field      string // "provisioning.subnets[0]", for messages
	prefix     netip.Prefix
	start, end netip.Addr // pool; invalid in proxy mode
	self       netip.Addr // kiln's address on the subnet; zero if relayed
	probe      prober     // nil: no conflict detection

	poolSize int // addresses in the pool

	// mu guards the fields below and serializes choosing addresses.
	mu sync.Mutex
	// inflight are addresses being probed or offered right now.
	inflight map[netip.Addr]bool
	// used caches the pool addresses known to have a lease row (a superset:
	// rows deleted elsewhere are noticed when the pool runs out); nil until
	// loaded. next is where the search for a never-used address resumes.
	used map[netip.Addr]bool
	next netip.Addr
	// unknownOffers are the pool addresses offered to MACs without a host
	// row, by address (so at most the pool's size): a known client may take
	// one over when the pool has nothing else left.
	unknownOffers map[netip.Addr]string
}

// after returns the pool address after ip, wrapping to the start.
func (s *subnet) after(ip netip.Addr) netip.Addr {
	if n := ip.Next(); n.IsValid() && !s.end.Less(n) {
		return n
	}
	return s.start
}

func newSubnet(i int, c config.Subnet) *subnet {
	s := &subnet{cfg: c, field: fmt.Sprintf("provisioning.subnets[%d]", i), prefix: c.Prefix(), inflight: map[netip.Addr]bool{}, unknownOffers: map[netip.Addr]string{}}
	s.start, s.end = c.PoolRange()
	if s.start.IsValid() && s.end.IsValid() && !s.end.Less(s.start) {
		a, b := s.start.As4(), s.end.As4()
		s.poolSize = int(binary.BigEndian.Uint32(b[:])-binary.BigEndian.Uint32(a[:])) + 1
	}
	return s
}

func (s *subnet) inPool(ip netip.Addr) bool {
	return s.start.IsValid() && !ip.Less(s.start) && !s.end.Less(ip)
}

// server answers DHCP requests for a set of subnets.
type server struct {
	log    *slog.Logger
	db     *store.Store
	now    func() time.Time
	domain string
	dnsOn  bool // kiln's DNS service runs: default DNS server is kiln itself
	ntpOn  bool // kiln's NTP service runs: default NTP server is kiln itself
	// syslogOn: kiln's syslog service runs: default log server is kiln itself.
	syslogOn bool
	// httpPort is the HTTP boot service's port for boot URLs (0: the default).
	httpPort int
	subnets  []*subnet
	metrics  *dhcpMetrics // nil counts nothing
	// nonces mints the script URLs' nonces (nil: iPXE gets a URL without
	// one, which the HTTP boot service refuses).
	nonces *bootnonce.Key

	// enrolRate limits enrolling unknown machines in all (nil: no limit);
	// past maxEnrolled hosts of role unknown (0: no cap) nobody is enrolled.
	// Either way the client still gets its address.
	enrolRate   *limiter
	maxEnrolled int

	// refusedMu guards lastRefused.
	refusedMu   sync.Mutex
	lastRefused time.Time
}

// ingress is how a request reached kiln.
type ingress struct {
	ifname   string         // receiving interface, "" if unknown
	dst      netip.Addr     // the packet's destination address
	ifaddr   netip.Addr     // an IPv4 address of the receiving interface
	peer     netip.AddrPort // sender
	port4011 bool           // arrived on the PXE boot server port
}

// subnetFor picks the subnet a request belongs to: by relay address, else by
// the interface it arrived on.
func (s *server) subnetFor(req *dhcpv4.DHCPv4, in ingress) *subnet {
	if gi, ok := netip.AddrFromSlice(req.GatewayIPAddr.To4()); ok && !gi.IsUnspecified() {
		for _, sub := range s.subnets {
			if sub.prefix.Contains(gi) {
				return sub
			}
		}
		return nil
	}
	if in.ifname == "" {
		return nil // unbound listener: relayed requests only
	}
	var first *subnet
	ci, _ := netip.AddrFromSlice(req.ClientIPAddr.To4())
	for _, sub := range s.subnets {
		if sub.cfg.Interface != in.ifname {
			continue
		}
		if ci.IsValid() && !ci.IsUnspecified() && sub.prefix.Contains(ci) {
			return sub
		}
		if first == nil {
			first = sub
		}
	}
	return first
}

// handle answers one request. It returns nil when there is nothing to send.
func (s *server) handle(ctx context.Context, req *dhcpv4.DHCPv4, in ingress) (*dhcpv4.DHCPv4, netip.AddrPort, error) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return nil, netip.AddrPort{}, nil
	}
	sub := s.subnetFor(req, in)
	if sub == nil {
		return nil, netip.AddrPort{}, nil
	}
	s.metrics.request(sub, req.MessageType())
	st := state{
		ServerIP: sub.self,
		Subnet:   sub.cfg,
		HTTPPort: s.httpPort,
		Domain:   s.domain,
	}
	if !st.ServerIP.IsValid() {
		st.ServerIP = in.ifaddr
		if in.dst.IsValid() && !in.dst.IsUnspecified() && in.dst != netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			st.ServerIP = in.dst
		}
	}
	if !st.ServerIP.IsValid() {
		return nil, netip.AddrPort{}, errors.New("no server address for relayed request (the receiving interface has no IPv4 address)")
	}
	st.DNS = sub.cfg.DNSAddrs()
	if len(st.DNS) == 0 && s.dnsOn {
		st.DNS = []netip.Addr{st.ServerIP}
	}
	st.NTP = sub.cfg.NTPAddrs()
	if len(st.NTP) == 0 && s.ntpOn {
		st.NTP = []netip.Addr{st.ServerIP}
	}
	st.Syslog = sub.cfg.SyslogAddrs()
	if len(st.Syslog) == 0 && s.syslogOn {
		st.Syslog = []netip.Addr{st.ServerIP}
	}
	var err error
	if sub.cfg.Mode == config.ModeProxy || in.port4011 {
		err = s.proxy(ctx, req, in, sub, &st)
	} else {
		err = s.authoritative(ctx, req, sub, &st)
	}
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	st.BootNonce = s.bootNonce(req, st)
	resp, err := reply(req, st)
	if err != nil || resp == nil {
		return nil, netip.AddrPort{}, err
	}
	s.metrics.reply(sub, resp.MessageType())
	s.event(ctx, req, st, resp)
	return resp, destination(req, resp, in), nil
}

// bootNonce mints the nonce for the script URL in an OFFER or ACK to iPXE
// of a known host: bound to this exchange (xid, MAC) and to the address the
// client will fetch its script from — the one handed out, else the one it
// has (proxyDHCP's port 4011); a proxy offer to a client without an address
// binds none, and the HTTP boot service then identifies the client by its
// neighbour entry. The host's token never goes into a DHCP packet: replies
// are broadcast, and anyone on the LAN sees them.
func (s *server) bootNonce(req *dhcpv4.DHCPv4, st state) string {
	if s.nonces == nil || st.Host == nil || !classify(req).ipxe ||
		(st.Type != dhcpv4.MessageTypeOffer && st.Type != dhcpv4.MessageTypeAck) {
		return ""
	}
	addr := st.YourIP
	if !addr.IsValid() {
		if ci := addrOf(req.ClientIPAddr); ci.IsValid() && !ci.IsUnspecified() {
			addr = ci
		}
	}
	return s.nonces.Mint(bootnonce.Exchange{XID: req.TransactionID, MAC: req.ClientHWAddr, Addr: addr}, s.now())
}

// proxy fills st for proxyDHCP: PXE clients get boot information, nothing else.
func (s *server) proxy(ctx context.Context, req *dhcpv4.DHCPv4, in ingress, sub *subnet, st *state) error {
	if !classify(req).bootable() {
		return nil
	}
	mt := req.MessageType()
	switch {
	case in.port4011 && (mt == dhcpv4.MessageTypeRequest || mt == dhcpv4.MessageTypeInform):
		st.Type = dhcpv4.MessageTypeAck
	case !in.port4011 && mt == dhcpv4.MessageTypeDiscover:
		st.Type = dhcpv4.MessageTypeOffer
	default:
		return nil // the other DHCP server handles REQUEST, RELEASE …
	}
	h, err := s.hostFor(ctx, req, in.port4011) // enrolled once it completes its exchange
	if err != nil {
		return err
	}
	st.Proxy, st.Host = true, h
	return nil
}

// authoritative fills st for a subnet kiln hands out addresses on.
func (s *server) authoritative(ctx context.Context, req *dhcpv4.DHCPv4, sub *subnet, st *state) error {
	mac := req.ClientHWAddr.String()
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		// Unknown machines are enrolled on REQUEST, not here: a flood of
		// made-up MACs never gets that far.
		h, err := s.hostFor(ctx, req, false)
		if err != nil {
			return err
		}
		ip, release, err := s.allocate(ctx, sub, mac, h, addrOf(req.RequestedIPAddress()))
		if err != nil {
			return err
		}
		defer release()
		now := s.now()
		old, err := s.db.LeaseByMAC(ctx, sub.cfg.Name, mac)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		st.LeaseTime = leaseTime(sub, h, old, ip, now)
		if err != nil || old.IP != ip || old.State != store.LeaseBound || !old.Active(now) {
			hold := offerHold
			if h == nil {
				hold = unknownOfferHold
			}
			if err := s.db.PutLease(ctx, s.lease(req, sub, ip, store.LeaseOffered, now.Add(hold))); err != nil {
				return err
			}
			sub.mu.Lock()
			if h == nil {
				sub.unknownOffers[ip] = mac
			} else {
				delete(sub.unknownOffers, ip)
			}
			sub.mu.Unlock()
		}
		st.Type, st.YourIP, st.Host = dhcpv4.MessageTypeOffer, ip, h
		return nil

	case dhcpv4.MessageTypeRequest:
		return s.request(ctx, req, sub, st)

	case dhcpv4.MessageTypeDecline:
		ip := addrOf(req.RequestedIPAddress())
		if !s.ours(req, st) || !sub.prefix.Contains(ip) {
			return nil
		}
		// RFC 2131 4.3.3: only the client the address was offered or leased
		// to may decline it; anyone else could otherwise wipe a bound lease.
		if l, err := s.db.LeaseByIP(ctx, ip); errors.Is(err, store.ErrNotFound) || (err == nil && (l.MAC != mac || !l.Active(s.now()))) {
			s.log.Debug("ignoring DECLINE of an address not offered or leased to the sender", "mac", mac, "ip", ip, "subnet", sub.cfg.Name)
			return nil
		} else if err != nil {
			return err
		}
		s.log.Warn("client declined address: it is in use by another machine", "mac", mac, "ip", ip, "subnet", sub.cfg.Name)
		s.addEvent(ctx, mac, "", store.EventDHCPDecline, fmt.Sprintf("ip=%s subnet=%s", ip, sub.cfg.Name))
		return s.db.PutLease(ctx, store.Lease{IP: ip, Subnet: sub.cfg.Name, State: store.LeaseDeclined, Expires: s.now().Add(declineHold)})

	case dhcpv4.MessageTypeRelease:
		ip := addrOf(req.ClientIPAddr)
		l, err := s.db.LeaseByMAC(ctx, sub.cfg.Name, mac)
		if err != nil || l.IP != ip {
			return nil
		}
		l.State, l.Expires = store.LeaseReleased, s.now()
		s.addEvent(ctx, mac, "", store.EventDHCPRelease, fmt.Sprintf("ip=%s subnet=%s", ip, sub.cfg.Name))
		return s.db.PutLease(ctx, l)

	case dhcpv4.MessageTypeInform:
		if addrOf(req.ClientIPAddr).IsUnspecified() {
			return nil
		}
		h, err := s.hostFor(ctx, req, false)
		if err != nil {
			return err
		}
		st.Type, st.Inform, st.Host = dhcpv4.MessageTypeAck, true, h
	}
	return nil
}

// request handles DHCPREQUEST in its SELECTING, INIT-REBOOT, RENEWING and
// REBINDING forms (RFC 2131 4.3.2).
func (s *server) request(ctx context.Context, req *dhcpv4.DHCPv4, sub *subnet, st *state) error {
	mac := req.ClientHWAddr.String()
	if sid := addrOf(req.ServerIdentifier()); sid.IsValid() && sid != st.ServerIP {
		// The client took another server's offer: forget ours.
		if l, err := s.db.LeaseByMAC(ctx, sub.cfg.Name, mac); err == nil && l.State == store.LeaseOffered {
			l.State, l.Expires = store.LeaseReleased, s.now()
			return s.db.PutLease(ctx, l)
		}
		return nil
	}
	ip := addrOf(req.RequestedIPAddress())
	if !ip.IsValid() {
		ip = addrOf(req.ClientIPAddr)
	}
	nak := func(why string) error {
		st.Type, st.NakMessage = dhcpv4.MessageTypeNak, why
		return nil
	}
	if !ip.IsValid() || ip.IsUnspecified() {
		return nil // malformed: nothing requested
	}
	if !sub.prefix.Contains(ip) {
		return nak(fmt.Sprintf("%s is not in %s", ip, sub.prefix))
	}
	h, err := s.hostFor(ctx, req, true)
	if err != nil {
		return err
	}
	if r, ok := reservedIn(sub, h); ok {
		if ip != r {
			return nak(fmt.Sprintf("%s is reserved %s", mac, r))
		}
	} else {
		sub.mu.Lock()
		ok, why, err := s.free(ctx, sub, mac, h, ip)
		sub.mu.Unlock()
		if err != nil {
			return err
		}
		if !ok {
			return nak(why)
		}
	}
	now := s.now()
	old, err := s.db.LeaseByMAC(ctx, sub.cfg.Name, mac)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	st.LeaseTime = leaseTime(sub, h, old, ip, now)
	if err := s.db.PutLease(ctx, s.lease(req, sub, ip, store.LeaseBound, now.Add(st.LeaseTime))); err != nil {
		return err
	}
	sub.mu.Lock()
	delete(sub.unknownOffers, ip)
	sub.mu.Unlock()
	st.Type, st.YourIP, st.Host = dhcpv4.MessageTypeAck, ip, h
	return nil
}

// leaseTime is how long mac may hold ip: the subnet's lease time, except
// that a machine the operator has not registered gets at most firstLease
// until it renews a lease it has held for half of that (RFC 2131's T1). A
// flood of made-up MACs that complete one REQUEST each then holds the pool
// for minutes, not the subnet's lease time (12 h by default); a real client
// renews at T1 and keeps its address for the full time. old is the MAC's
// current lease in the subnet (zero if none).
func leaseTime(sub *subnet, h *store.Host, old store.Lease, ip netip.Addr, now time.Time) time.Duration {
	full := sub.cfg.Lease()
	if known(h) || full <= firstLease {
		return full
	}
	if old.IP == ip && old.State == store.LeaseBound && old.Active(now) {
		// More than firstLease left: it already has a full lease. At most
		// half left: it held the first lease to T1.
		if left := old.Expires.Sub(now); left > firstLease || left <= firstLease/2 {
			return full
		}
	}
	return firstLease
}

// free reports whether mac may hold ip (a pool address nobody else holds).
// The caller holds sub.mu.
func (s *server) free(ctx context.Context, sub *subnet, mac string, h *store.Host, ip netip.Addr) (bool, string, error) {
	if !sub.inPool(ip) {
		return false, fmt.Sprintf("%s is outside the pool", ip), nil
	}
	if ip == sub.self || ip == sub.cfg.RouterAddr() {
		return false, fmt.Sprintf("%s is in use", ip), nil
	}
	name, err := s.db.ReservedFor(ctx, ip)
	if err != nil {
		return false, "", err
	}
	if name != "" && (h == nil || name != h.Name) {
		return false, fmt.Sprintf("%s is reserved for another host", ip), nil
	}
	l, err := s.db.LeaseByIP(ctx, ip)
	if errors.Is(err, store.ErrNotFound) {
		return !sub.inflight[ip], fmt.Sprintf("%s is being offered to another client", ip), nil
	} else if err != nil {
		return false, "", err
	}
	if l.MAC != mac && l.Active(s.now()) && !(known(h) && l.State == store.LeaseOffered && sub.unknownOffers[ip] == l.MAC) {
		return false, fmt.Sprintf("%s is leased to another client", ip), nil
	}
	return true, "", nil
}

// allocate chooses an address for a DISCOVER: the host's reservation, else its
// previous lease, the address it asks for, a never-used pool address, or the
// longest-unused one; each pool address is probed first. release must be
// called once the choice is stored.
func (s *server) allocate(ctx context.Context, sub *subnet, mac string, h *store.Host, requested netip.Addr) (netip.Addr, func(), error) {
	if r, ok := reservedIn(sub, h); ok {
		return r, func() {}, nil
	}
	if !sub.start.IsValid() {
		return netip.Addr{}, nil, fmt.Errorf("%s has no pool for %s", sub.cfg.Name, mac)
	}
	cands, ownActive, err := s.candidates(ctx, sub, mac, h, requested)
	if err != nil {
		return netip.Addr{}, nil, err
	}
	release := func(ips ...netip.Addr) {
		sub.mu.Lock()
		for _, ip := range ips {
			delete(sub.inflight, ip)
		}
		sub.mu.Unlock()
	}
	for i, ip := range cands {
		// The client's own unexpired lease is not probed: it is in use, by
		// the client itself.
		if sub.probe != nil && !(i == 0 && ownActive) {
			owner, err := sub.probe.Probe(ctx, ip)
			if err != nil {
				s.log.Warn("address probe failed; offering without it", "ip", ip, "err", err)
			} else if owner != nil && owner.String() != mac {
				s.log.Warn("pool address answers on the network; skipping it", "ip", ip, "owner", owner, "subnet", sub.cfg.Name)
				if err := s.db.PutLease(ctx, store.Lease{IP: ip, Subnet: sub.cfg.Name, State: store.LeaseDeclined, Expires: s.now().Add(declineHold)}); err != nil {
					release(cands...)
					return netip.Addr{}, nil, err
				}
				release(ip)
				continue
			}
		}
		release(cands[i+1:]...)
		return ip, func() { release(ip) }, nil
	}
	return netip.Addr{}, nil, fmt.Errorf("pool of subnet %s (%s-%s) has no free address for %s: enlarge %s.pool or shorten lease_time",
		sub.cfg.Name, sub.start, sub.end, mac, sub.field)
}

// candidates returns up to maxProbes addresses to try, claimed in
// sub.inflight; ownActive reports that the first is the client's own
// unexpired lease. In order: the client's own lease, the address it asks for,
// never-used pool addresses, then expired leases, oldest first. It costs a
// few indexed lookups per DISCOVER: only when the pool has no never-used
// address left are all of the subnet's leases read.
func (s *server) candidates(ctx context.Context, sub *subnet, mac string, h *store.Host, requested netip.Addr) (_ []netip.Addr, ownActive bool, _ error) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	now := s.now()
	if sub.used == nil {
		if err := s.loadUsed(ctx, sub); err != nil {
			return nil, false, err
		}
	}
	var cands []netip.Addr
	// usable: in the pool, neither kiln's nor the router's address, not being
	// offered right now, not another host's reservation.
	usable := func(ip netip.Addr) (bool, error) {
		if !ip.IsValid() || !sub.inPool(ip) || ip == sub.self || ip == sub.cfg.RouterAddr() || sub.inflight[ip] || slices.Contains(cands, ip) {
			return false, nil
		}
		name, err := s.db.ReservedFor(ctx, ip)
		if err != nil {
			return false, err
		}
		return name == "" || (h != nil && name == h.Name), nil
	}
	// lease returns ip's lease row; ok is false when it has none.
	lease := func(ip netip.Addr) (l store.Lease, ok bool, err error) {
		l, err = s.db.LeaseByIP(ctx, ip)
		if errors.Is(err, store.ErrNotFound) {
			return store.Lease{}, false, nil
		}
		if err == nil {
			sub.used[ip] = true
		}
		return l, err == nil, err
	}
	var own netip.Addr
	if l, err := s.db.LeaseByMAC(ctx, sub.cfg.Name, mac); err == nil {
		own, ownActive = l.IP, l.Active(now)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, false, err
	}
	for _, ip := range []netip.Addr{own, requested} {
		ok, err := usable(ip)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			continue
		}
		if ip != own {
			l, found, err := lease(ip)
			if err != nil {
				return nil, false, err
			}
			if found && l.MAC != mac && l.Active(now) {
				continue
			}
		}
		cands = append(cands, ip)
	}
	// Never-used addresses, lowest first. Every address from sub.start up to
	// sub.next has a lease row: the search starts there and moves it on
	// over the used addresses it passes.
	if sub.next.IsValid() && sub.inPool(sub.next) {
		advance := true
		for ip, n := sub.next, 0; n < sub.poolSize && len(cands) < maxProbes; ip, n = sub.after(ip), n+1 {
			if ip == sub.start && n > 0 {
				advance = false // wrapped around
			}
			used := sub.used[ip]
			if !used {
				ok, err := usable(ip)
				if err != nil {
					return nil, false, err
				}
				if !ok {
					advance = false
					continue
				}
				_, found, err := lease(ip)
				if err != nil {
					return nil, false, err
				}
				used = found
			}
			if !used {
				cands = append(cands, ip)
				advance = false
				continue
			}
			if advance {
				sub.next = sub.after(ip)
			}
		}
	}
	if len(cands) < maxProbes {
		// The pool has no never-used address left: read every lease, forget
		// rows deleted since (their addresses are never-used again) and take
		// expired leases, oldest first.
		leases, err := s.db.Leases(ctx, sub.cfg.Name)
		if err != nil {
			return nil, false, err
		}
		sub.used = make(map[netip.Addr]bool, len(leases))
		var stale, unknown []store.Lease
		for _, l := range leases {
			sub.used[l.IP] = true
			switch {
			case l.MAC != mac && !l.Active(now):
				stale = append(stale, l)
			case l.MAC != mac && l.State == store.LeaseOffered && sub.unknownOffers[l.IP] == l.MAC:
				unknown = append(unknown, l)
			}
		}
		sub.next = sub.start
		sort.Slice(stale, func(i, j int) bool { return stale[i].Updated.Before(stale[j].Updated) })
		if known(h) {
			// Offers to unknown MACs must not lock registered machines
			// out: take the oldest of them over.
			sort.Slice(unknown, func(i, j int) bool { return unknown[i].Updated.Before(unknown[j].Updated) })
			stale = append(stale, unknown...)
		}
		for _, l := range stale {
			if len(cands) == maxProbes {
				break
			}
			ok, err := usable(l.IP)
			if err != nil {
				return nil, false, err
			}
			if ok {
				cands = append(cands, l.IP)
			}
		}
	}
	for _, ip := range cands {
		sub.inflight[ip] = true
	}
	return cands, ownActive && len(cands) > 0 && cands[0] == own, nil
}

// loadUsed fills sub.used with the pool addresses that have a lease row.
func (s *server) loadUsed(ctx context.Context, sub *subnet) error {
	leases, err := s.db.Leases(ctx, sub.cfg.Name)
	if err != nil {
		return err
	}
	sub.used = make(map[netip.Addr]bool, len(leases))
	for _, l := range leases {
		sub.used[l.IP] = true
	}
	sub.next = sub.start
	return nil
}

// known reports whether h is a machine the operator registered (not one
// kiln enrolled by itself).
func known(h *store.Host) bool { return h != nil && h.Role != store.EnrolledRole }

// reservedIn returns h's reserved address if it lies in sub.
func reservedIn(sub *subnet, h *store.Host) (netip.Addr, bool) {
	if h == nil || !h.IPv4.IsValid() || !sub.prefix.Contains(h.IPv4) {
		return netip.Addr{}, false
	}
	if h.IPv4 == sub.prefix.Addr() || h.IPv4 == broadcastAddr(sub.prefix) || h.IPv4 == sub.self {
		return netip.Addr{}, false
	}
	return h.IPv4, true
}

// hostFor finds the client's host by MAC, then by option 82; with enroll an
// unknown client becomes a new host.
func (s *server) hostFor(ctx context.Context, req *dhcpv4.DHCPv4, enroll bool) (*store.Host, error) {
	mac := req.ClientHWAddr.String()
	h, err := s.db.HostByMAC(ctx, mac)
	if err == nil {
		return &h, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if circuit, remote := option82(req); circuit != "" || remote != "" {
		h, err := s.db.HostByOption82(ctx, circuit, remote)
		if err == nil {
			return &h, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	if !enroll || !s.mayEnrol(ctx, mac) {
		return nil, nil
	}
	h, created, err := s.db.EnrollUnknown(ctx, mac)
	if err != nil {
		return nil, fmt.Errorf("enrolling %s: %w", mac, err)
	}
	if created {
		s.log.Info("enrolled unknown machine", "mac", mac, "host", h.Name)
	}
	return &h, nil
}

// mayEnrol applies the enrolment rate and cap; a refusal is logged at most
// once a minute (a flood would repeat it per packet).
func (s *server) mayEnrol(ctx context.Context, mac string) bool {
	if s.enrolRate != nil && !s.enrolRate.Allow([6]byte{}) {
		s.enrolRefused("rate", mac)
		return false
	}
	if s.maxEnrolled > 0 {
		n, err := s.db.CountHosts(ctx, store.EnrolledRole)
		if err != nil || n >= s.maxEnrolled {
			s.enrolRefused("cap", mac)
			return false
		}
	}
	return true
}

func (s *server) enrolRefused(why, mac string) {
	s.refusedMu.Lock()
	defer s.refusedMu.Unlock()
	if now := s.now(); now.Sub(s.lastRefused) > time.Minute {
		s.lastRefused = now
		s.log.Warn("not enrolling unknown machines for now; they still get addresses", "reason", why, "mac", mac,
			"max_enrolled", s.maxEnrolled, "hint", "delete or register the unknown-* hosts")
	}
}

// ours reports whether a message naming a server (DECLINE, REQUEST) names kiln.
func (s *server) ours(req *dhcpv4.DHCPv4, st *state) bool {
	sid := addrOf(req.ServerIdentifier())
	return !sid.IsValid() || sid == st.ServerIP
}

func (s *server) lease(req *dhcpv4.DHCPv4, sub *subnet, ip netip.Addr, state store.LeaseState, exp time.Time) store.Lease {
	return store.Lease{
		IP: ip, Subnet: sub.cfg.Name, MAC: req.ClientHWAddr.String(), Hostname: req.HostName(),
		ClientID: fmt.Sprintf("%x", req.Options.Get(dhcpv4.OptionClientIdentifier)), RelayInfo: relayInfo(req),
		State: state, Expires: exp,
	}
}

// event records a boot event for offers and acks.
func (s *server) event(ctx context.Context, req *dhcpv4.DHCPv4, st state, resp *dhcpv4.DHCPv4) {
	var kind string
	switch st.Type {
	case dhcpv4.MessageTypeOffer:
		kind = store.EventDHCPOffer
	case dhcpv4.MessageTypeAck:
		kind = store.EventDHCPAck
	case dhcpv4.MessageTypeNak:
		kind = store.EventDHCPNak
	default:
		return
	}
	c := classify(req)
	var d []string
	if st.YourIP.IsValid() {
		d = append(d, "ip="+st.YourIP.String())
	}
	d = append(d, "subnet="+st.Subnet.Name)
	if st.Proxy {
		d = append(d, "proxy")
	}
	if f := resp.BootFileNameOption(); f != "" {
		// Without the query: a script URL carries this exchange's nonce,
		// and events are shown to every read-scope API user.
		f, _, _ = strings.Cut(f, "?")
		d = append(d, "file="+f)
	}
	if c.bootable() {
		d = append(d, fmt.Sprintf("arch=%d", c.arch))
	}
	if c.ipxe {
		d = append(d, "ipxe")
	}
	if ri := relayInfo(req); ri != "" {
		d = append(d, "relay="+ri)
	}
	if st.NakMessage != "" {
		d = append(d, "reason="+st.NakMessage)
	}
	name := ""
	if st.Host != nil {
		name = st.Host.Name
	}
	s.addEvent(ctx, req.ClientHWAddr.String(), name, kind, strings.Join(d, " "))
}

func (s *server) addEvent(ctx context.Context, mac, host, kind, detail string) {
	if err := s.db.AddBootEvent(ctx, store.BootEvent{MAC: mac, Host: host, Kind: kind, Detail: detail}); err != nil {
		s.log.Warn("recording boot event failed", "mac", mac, "kind", kind, "err", err)
	}
}

// option82 returns the relay agent's circuit-id and remote-id as match keys.
func option82(req *dhcpv4.DHCPv4) (circuit, remote string) {
	ri := req.RelayAgentInfo()
	if ri == nil {
		return "", ""
	}
	return store.Option82Text(ri.Get(dhcpv4.AgentCircuitIDSubOption)), store.Option82Text(ri.Get(dhcpv4.AgentRemoteIDSubOption))
}

func relayInfo(req *dhcpv4.DHCPv4) string {
	circuit, remote := option82(req)
	var parts []string
	if circuit != "" {
		parts = append(parts, "circuit-id="+circuit)
	}
	if remote != "" {
		parts = append(parts, "remote-id="+remote)
	}
	return strings.Join(parts, ";")
}

// destination is where a reply goes (RFC 2131 4.1): the relay, the client's
// address, or broadcast for clients without one.
func destination(req, resp *dhcpv4.DHCPv4, in ingress) netip.AddrPort {
	if in.port4011 {
		return in.peer
	}
	if gi := addrOf(req.GatewayIPAddr); gi.IsValid() && !gi.IsUnspecified() {
		return netip.AddrPortFrom(gi, dhcpv4.ServerPort)
	}
	bcast := netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), dhcpv4.ClientPort)
	if resp.MessageType() == dhcpv4.MessageTypeNak {
		return bcast
	}
	if ci := addrOf(req.ClientIPAddr); ci.IsValid() && !ci.IsUnspecified() {
		return netip.AddrPortFrom(ci, dhcpv4.ClientPort)
	}
	return bcast
}

// addrOf converts a packet address; invalid for nil or non-IPv4.
func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok {
		return netip.Addr{}
	}
	return a
}
