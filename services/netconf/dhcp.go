package netconf

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
}

// leaseFromACK extracts a Lease from a DHCPACK.
func leaseFromACK(ifname string, ack *dhcpv4.DHCPv4, now time.Time) (*Lease, error) {
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
	return l, nil
}

// dhcpClient keeps a lease on one interface: DORA, apply, renew at T1,
// retry renewing until expiry, start over.
type dhcpClient struct {
	sys      *System
	ifname   string
	hostname string
	metric   int // of the default route through the lease's router
	log      *slog.Logger
	// onLease is told about every lease applied, and nil when it is lost.
	onLease func(*Lease)
}

func (d *dhcpClient) run(ctx context.Context) {
	var mods []dhcpv4.Modifier
	if d.hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(d.hostname)))
	}
	backoff := time.Second
	var prev *Lease
	for ctx.Err() == nil {
		var c *nclient4.Client
		err := d.sys.Do(func() (err error) {
			c, err = nclient4.New(d.ifname, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
			return err
		})
		if err == nil {
			prev = d.keep(ctx, c, mods, prev)
			c.Close()
			if prev != nil {
				backoff = time.Second
			}
		} else {
			d.log.Debug("opening DHCP client", "err", err)
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// keep runs one client until its lease is lost; it returns the last lease applied.
func (d *dhcpClient) keep(ctx context.Context, c *nclient4.Client, mods []dhcpv4.Modifier, prev *Lease) *Lease {
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	nl, err := c.Request(rctx, mods...)
	cancel()
	if err != nil {
		d.log.Debug("DHCP request failed", "err", err)
		return prev
	}
	for {
		l, err := leaseFromACK(d.ifname, nl.ACK, time.Now())
		if err != nil {
			d.log.Warn("unusable DHCP lease", "err", err)
			return prev
		}
		if err := d.apply(l, prev); err != nil {
			d.log.Error("applying DHCP lease", "err", err)
		} else if prev == nil || prev.Addr != l.Addr {
			d.log.Info("DHCP lease", "address", l.Addr, "router", l.Router, "dns", l.DNS, "lease", l.Duration)
		} else {
			d.log.Debug("DHCP lease renewed", "address", l.Addr, "lease", l.Duration)
		}
		prev = l
		d.onLease(l)
		expiry := l.Obtained.Add(l.Duration)
		next := l.Obtained.Add(l.Renew)
		for {
			if !sleep(ctx, time.Until(next)) {
				return prev
			}
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			renewed, err := c.Renew(rctx, nl, mods...)
			cancel()
			if err == nil {
				nl = renewed
				break
			}
			left := time.Until(expiry)
			if left <= 0 {
				d.log.Warn("DHCP lease expired; requesting a new one", "address", l.Addr, "err", err)
				d.onLease(&Lease{Interface: d.ifname}) // lost
				return nil
			}
			d.log.Warn("DHCP renewal failed; retrying", "err", err, "lease_left", left.Round(time.Second))
			next = time.Now().Add(max(min(left/2, time.Minute), time.Second))
		}
	}
}

// apply sets the lease's address with its lifetime (it lapses if renewals
// stop) and a default route through the router.
func (d *dhcpClient) apply(l, prev *Lease) error {
	link, err := d.sys.h.LinkByName(d.ifname)
	if err != nil {
		return fmt.Errorf("finding %s: %w", d.ifname, err)
	}
	if prev != nil && prev.Addr.IsValid() && prev.Addr != l.Addr {
		d.sys.h.AddrDel(link, &netlink.Addr{IPNet: ipnet(prev.Addr)})
	}
	secs := int(l.Duration / time.Second)
	a := &netlink.Addr{IPNet: ipnet(l.Addr), ValidLft: secs, PreferedLft: secs}
	if err := d.sys.h.AddrReplace(link, a); err != nil {
		return fmt.Errorf("adding address %s: %w", l.Addr, err)
	}
	if l.Router.IsValid() {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: l.Router.AsSlice(), Priority: d.metric,
			Protocol: unix.RTPROT_DHCP, Table: unix.RT_TABLE_MAIN}
		if err := d.sys.h.RouteReplace(r); err != nil {
			return fmt.Errorf("adding default route via %s: %w", l.Router, err)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
