// Package dhcplease is kiln's one DHCPv4 client (nclient4 is the engine): it
// reads a Lease from a DHCPACK, keeps a lease on one interface (DORA, apply,
// renew at T1, retry renewing until expiry, start over) and applies a lease's
// address and default route over netlink. PID 1's boot network
// (init/bootnet), the diskless client and the netconf service all use it.
package dhcplease

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Lease is what a DHCPv4 server gave an interface.
type Lease struct {
	Interface string        `json:"interface"`
	Addr      netip.Prefix  `json:"address"`
	Router    netip.Addr    `json:"router,omitzero"`
	DNS       []netip.Addr  `json:"dns,omitempty"`
	Search    []string      `json:"search,omitempty"`
	Server    netip.Addr    `json:"server,omitzero"`
	Obtained  time.Time     `json:"obtained"`
	Duration  time.Duration `json:"duration_ns"`
	Renew     time.Duration `json:"renew_ns"` // T1, from Obtained
	Rebind    time.Duration `json:"-"`        // T2, from Obtained
}

// FromACK extracts a Lease from a DHCPACK received on ifname at now.
func FromACK(ifname string, ack *dhcpv4.DHCPv4, now time.Time) (*Lease, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return nil, fmt.Errorf("DHCPACK from %s carries no address", ack.ServerIPAddr)
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = net.IP(ip.AsSlice()).DefaultMask()
	}
	ones, _ := mask.Size()
	l := &Lease{Interface: ifname, Addr: netip.PrefixFrom(ip, ones), Obtained: now}
	if rs := ack.Router(); len(rs) > 0 {
		l.Router, _ = netip.AddrFromSlice(rs[0].To4())
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	if s := ack.DomainSearch(); s != nil {
		l.Search = s.Labels
	} else if d := ack.DomainName(); d != "" {
		l.Search = []string{d}
	}
	if id := ack.ServerIdentifier(); id != nil {
		l.Server, _ = netip.AddrFromSlice(id.To4())
	}
	l.Duration = ack.IPAddressLeaseTime(time.Hour)
	l.Renew = ack.IPAddressRenewalTime(l.Duration / 2)
	if l.Renew <= 0 || l.Renew >= l.Duration {
		l.Renew = l.Duration / 2
	}
	l.Rebind = ack.IPAddressRebindingTime(l.Duration * 7 / 8)
	return l, nil
}

// Open opens a client on ifname (2 s per attempt, 3 attempts).
func Open(ifname string) (*nclient4.Client, error) {
	return nclient4.New(ifname, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
}

// modifiers name the host in requests (option 12) when hostname is set.
func modifiers(hostname string) []dhcpv4.Modifier {
	if hostname == "" {
		return nil
	}
	return []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptHostName(hostname))}
}

// Request runs one DORA exchange on ifname (at most 20 s) and returns the lease.
func Request(ctx context.Context, ifname, hostname string) (*Lease, error) {
	k := &Keeper{Interface: ifname}
	nl, err := k.exchange(ctx, 20*time.Second, func(ctx context.Context, c *nclient4.Client) (*nclient4.Lease, error) {
		return c.Request(ctx, modifiers(hostname)...)
	})
	if err != nil {
		return nil, err
	}
	return FromACK(ifname, nl.ACK, time.Now())
}

// Keeper keeps a lease on one interface until its context ends.
type Keeper struct {
	Interface string
	// Hostname is sent in requests (option 12) when set.
	Hostname string
	// Open opens the client socket; Open (above) if nil. netconf opens it
	// inside its network namespace.
	Open func(ifname string) (*nclient4.Client, error)
	// Apply puts a lease on the interface; prev is the lease applied before
	// (nil at first).
	Apply func(l, prev *Lease) error
	// OnLease is told about every lease applied, and about a lost one with
	// a Lease that has only Interface set. Nil ignores them.
	OnLease func(*Lease)
	// Log records leases and failures; nil discards.
	Log *slog.Logger
}

func (k *Keeper) log() *slog.Logger {
	if k.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return k.Log
}

func (k *Keeper) told(l *Lease) {
	if k.OnLease != nil {
		k.OnLease(l)
	}
}

// exchange opens a client for one exchange (within timeout) and closes it
// again: nclient4's packet socket has no filter, so while it is open every
// IPv4 packet of the NIC is copied to this process — none stays open
// between a request and the renewals.
func (k *Keeper) exchange(ctx context.Context, timeout time.Duration, f func(context.Context, *nclient4.Client) (*nclient4.Lease, error)) (*nclient4.Lease, error) {
	open := k.Open
	if open == nil {
		open = Open
	}
	c, err := open(k.Interface)
	if err != nil {
		return nil, fmt.Errorf("opening a DHCP client on %s: %w", k.Interface, err)
	}
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return f(rctx, c)
}

// Run obtains, applies and renews leases, starting over with backoff (1 s
// doubling to 30 s) after failures, until ctx ends.
func (k *Keeper) Run(ctx context.Context) {
	mods := modifiers(k.Hostname)
	backoff := time.Second
	var prev *Lease
	for ctx.Err() == nil {
		if prev = k.keep(ctx, mods, prev); prev != nil {
			backoff = time.Second
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// keep obtains a lease and renews it until it is lost; it returns the last
// lease applied.
func (k *Keeper) keep(ctx context.Context, mods []dhcpv4.Modifier, prev *Lease) *Lease {
	log := k.log()
	nl, err := k.exchange(ctx, 20*time.Second, func(ctx context.Context, c *nclient4.Client) (*nclient4.Lease, error) {
		return c.Request(ctx, mods...)
	})
	if err != nil {
		log.Debug("DHCP request failed", "err", err)
		return prev
	}
	for {
		l, err := FromACK(k.Interface, nl.ACK, time.Now())
		if err != nil {
			log.Warn("unusable DHCP lease", "err", err)
			return prev
		}
		if err := k.Apply(l, prev); err != nil {
			log.Error("applying DHCP lease", "err", err)
		} else if prev == nil || prev.Addr != l.Addr {
			log.Info("DHCP lease", "address", l.Addr, "router", l.Router, "dns", l.DNS, "lease", l.Duration)
		} else {
			log.Debug("DHCP lease renewed", "address", l.Addr, "lease", l.Duration)
		}
		prev = l
		k.told(l)
		expiry := l.Obtained.Add(l.Duration)
		next := l.Obtained.Add(l.Renew)
		for {
			if !sleep(ctx, time.Until(next)) {
				return prev
			}
			renewed, err := k.exchange(ctx, 10*time.Second, func(ctx context.Context, c *nclient4.Client) (*nclient4.Lease, error) {
				return c.Renew(ctx, nl, mods...)
			})
			if err == nil {
				nl = renewed
				break
			}
			left := time.Until(expiry)
			if left <= 0 {
				log.Warn("DHCP lease expired; requesting a new one", "address", l.Addr, "err", err)
				k.told(&Lease{Interface: k.Interface}) // lost
				return nil
			}
			log.Warn("DHCP renewal failed; retrying", "err", err, "lease_left", left.Round(time.Second))
			next = time.Now().Add(max(min(left/2, time.Minute), time.Second))
		}
	}
}

// Netlink is what Apply changes (*netlink.Handle satisfies it; Host is the
// calling thread's namespace).
type Netlink interface {
	AddrReplace(netlink.Link, *netlink.Addr) error
	AddrDel(netlink.Link, *netlink.Addr) error
	RouteReplace(*netlink.Route) error
}

// Host is Netlink in the calling thread's network namespace.
type Host struct{}

func (Host) AddrReplace(l netlink.Link, a *netlink.Addr) error { return netlink.AddrReplace(l, a) }
func (Host) AddrDel(l netlink.Link, a *netlink.Addr) error     { return netlink.AddrDel(l, a) }
func (Host) RouteReplace(r *netlink.Route) error               { return netlink.RouteReplace(r) }

// Apply sets l's address on link with the lease's lifetime, so it lapses if
// renewals stop (none when l.Duration is 0: the address stays), and a default
// route through its router with metric; prev's address goes when it differs.
func Apply(h Netlink, link netlink.Link, l, prev *Lease, metric int) error {
	if prev != nil && prev.Addr.IsValid() && prev.Addr != l.Addr {
		h.AddrDel(link, &netlink.Addr{IPNet: ipnet(prev.Addr)})
	}
	secs := int(l.Duration / time.Second)
	a := &netlink.Addr{IPNet: ipnet(l.Addr), ValidLft: secs, PreferedLft: secs}
	if err := h.AddrReplace(link, a); err != nil {
		return fmt.Errorf("adding address %s: %w", l.Addr, err)
	}
	if l.Router.IsValid() {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: l.Router.AsSlice(), Priority: metric,
			Protocol: unix.RTPROT_DHCP, Table: unix.RT_TABLE_MAIN}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("adding default route via %s: %w", l.Router, err)
		}
	}
	return nil
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d > 0 {
		wctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		<-wctx.Done()
	}
	return ctx.Err() == nil
}
