// Package bootnet gives the appliance a network at boot until the netconf
// service applies the configured one: it brings up loopback and every wired
// Ethernet NIC and keeps a DHCPv4 lease on each (address, default route,
// /run/resolv.conf). It watches for NICs that appear later (drivers load
// asynchronously).
package bootnet

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"kiln.dev/kiln/internal/atomicfile"
	"kiln.dev/kiln/internal/resolvconf"
)

// Config configures Run.
type Config struct {
	// Hostname is sent in DHCP requests (option 12).
	Hostname string
	// ResolvConf is written with the leases' DNS servers; default /run/resolv.conf.
	ResolvConf string
	// SysClassNet is /sys/class/net.
	SysClassNet string
	// Rescan is how often new NICs are looked for; default 2 s.
	Rescan time.Duration
	Log    *slog.Logger
}

// Run brings the network up and keeps leases until ctx is done.
func Run(ctx context.Context, c Config) error {
	if c.ResolvConf == "" {
		c.ResolvConf = "/run/resolv.conf"
	}
	if c.SysClassNet == "" {
		c.SysClassNet = "/sys/class/net"
	}
	if c.Rescan == 0 {
		c.Rescan = 2 * time.Second
	}
	log := c.Log.With("component", "bootnet")
	if err := LoopbackUp(); err != nil {
		log.Error("bringing up loopback", "err", err)
	}
	r := &resolver{path: c.ResolvConf, byIf: map[string]Lease{}}
	started := map[string]bool{}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		for _, ifname := range EthernetNICs(c.SysClassNet) {
			if started[ifname] {
				continue
			}
			started[ifname] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				keepLease(ctx, ifname, c.Hostname, r, log.With("interface", ifname))
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.Rescan):
		}
	}
}

// LoopbackUp brings up lo (the kernel assigns 127.0.0.1 and ::1).
func LoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bringing up lo: %w", err)
	}
	return nil
}

// EthernetNICs lists physical wired Ethernet interfaces: ARP type 1 with a
// backing device and no wireless directory, sorted.
func EthernetNICs(sysClassNet string) []string {
	ents, err := os.ReadDir(sysClassNet)
	if err != nil {
		return nil
	}
	var nics []string
	for _, e := range ents {
		dir := filepath.Join(sysClassNet, e.Name())
		t, err := os.ReadFile(filepath.Join(dir, "type"))
		if err != nil || strings.TrimSpace(string(t)) != "1" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "device")); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "wireless")); err == nil {
			continue
		}
		nics = append(nics, e.Name())
	}
	sort.Strings(nics)
	return nics
}

// Lease is the network configuration one DHCP ACK gives.
type Lease struct {
	Addr     net.IPNet
	Router   net.IP // nil without option 3
	DNS      []net.IP
	Search   []string
	Duration time.Duration // lease time
	Renew    time.Duration // T1
	Rebind   time.Duration // T2
}

// FromACK extracts a Lease from a DHCPACK.
func FromACK(ack *dhcpv4.DHCPv4) (Lease, error) {
	ip := ack.YourIPAddr.To4()
	if ip == nil || ip.IsUnspecified() {
		return Lease{}, fmt.Errorf("DHCPACK from %s carries no address", ack.ServerIPAddr)
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ip.DefaultMask()
	}
	l := Lease{Addr: net.IPNet{IP: ip, Mask: mask}, DNS: ack.DNS()}
	if rs := ack.Router(); len(rs) > 0 {
		l.Router = rs[0]
	}
	if s := ack.DomainSearch(); s != nil {
		l.Search = s.Labels
	} else if d := ack.DomainName(); d != "" {
		l.Search = []string{d}
	}
	l.Duration = ack.IPAddressLeaseTime(time.Hour)
	l.Renew = ack.IPAddressRenewalTime(l.Duration / 2)
	l.Rebind = ack.IPAddressRebindingTime(l.Duration * 7 / 8)
	return l, nil
}

// keepLease obtains a lease on ifname, applies it and renews it, retrying
// with backoff, until ctx is done.
func keepLease(ctx context.Context, ifname, hostname string, r *resolver, log *slog.Logger) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		log.Error("interface vanished", "err", err)
		return
	}
	if err := netlink.LinkSetUp(link); err != nil {
		log.Error("bringing interface up", "err", err)
		return
	}
	var mods []dhcpv4.Modifier
	if hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(hostname)))
	}
	backoff := time.Second
	for ctx.Err() == nil {
		lease, l, err := request(ctx, ifname, mods)
		if err != nil {
			log.Debug("DHCP request failed; retrying", "err", err, "in", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		backoff = time.Second
		if err := apply(link, l); err != nil {
			log.Error("applying DHCP lease", "err", err)
		} else {
			log.Info("DHCP lease", "address", l.Addr.String(), "router", l.Router, "dns", l.DNS, "lease", l.Duration)
		}
		r.set(ifname, l)
		// Renew at T1; on failure start over (a fresh DORA) before expiry.
		for ctx.Err() == nil {
			if !sleep(ctx, l.Renew) {
				return
			}
			nl, err := renew(ctx, ifname, lease, mods)
			if err != nil {
				log.Warn("DHCP renewal failed; requesting a new lease", "err", err)
				break
			}
			lease = nl
			if l2, err := FromACK(nl.ACK); err == nil {
				l = l2
				if err := apply(link, l); err != nil {
					log.Error("applying renewed lease", "err", err)
				}
				r.set(ifname, l)
			}
		}
	}
}

func request(ctx context.Context, ifname string, mods []dhcpv4.Modifier) (*nclient4.Lease, Lease, error) {
	c, err := nclient4.New(ifname, nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(2))
	if err != nil {
		return nil, Lease{}, err
	}
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	lease, err := c.Request(rctx, mods...)
	if err != nil {
		return nil, Lease{}, err
	}
	l, err := FromACK(lease.ACK)
	return lease, l, err
}

func renew(ctx context.Context, ifname string, lease *nclient4.Lease, mods []dhcpv4.Modifier) (*nclient4.Lease, error) {
	c, err := nclient4.New(ifname, nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(2))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return c.Renew(rctx, lease, mods...)
}

// apply sets the lease's address (with lifetimes, so it lapses if renewals
// stop) and a default route through the lease's router.
func apply(link netlink.Link, l Lease) error {
	secs := int(l.Duration / time.Second)
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: l.Addr.IP, Mask: l.Addr.Mask}, ValidLft: secs, PreferedLft: secs}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("adding address %s: %w", l.Addr.String(), err)
	}
	if l.Router != nil {
		rt := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: l.Router, Priority: 100 + link.Attrs().Index}
		if err := netlink.RouteReplace(rt); err != nil {
			return fmt.Errorf("adding default route via %s: %w", l.Router, err)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// resolver writes resolv.conf from the leases of all interfaces.
type resolver struct {
	path string

	// mu guards byIf.
	mu   sync.Mutex
	byIf map[string]Lease
}

func (r *resolver) set(ifname string, l Lease) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byIf[ifname] = l
	atomicfile.WriteFile(r.path, []byte(ResolvConf(r.byIf)), 0o644)
}

// ResolvConf renders resolv.conf for the leases, interfaces in name order,
// without duplicate servers or domains (at most 3 servers, as libc reads).
func ResolvConf(byIf map[string]Lease) string {
	names := make([]string, 0, len(byIf))
	for n := range byIf {
		names = append(names, n)
	}
	sort.Strings(names)
	var servers, search []string
	for _, n := range names {
		for _, ip := range byIf[n].DNS {
			servers = append(servers, ip.String())
		}
		search = append(search, byIf[n].Search...)
	}
	return resolvconf.Render("written by kiln init from DHCP leases", servers, search)
}

// Acquire brings ifname up, obtains one DHCP lease and applies it without
// lifetimes and without renewing it: for a diskless client, whose root is
// reached over this address after the initramfs that would renew it is
// gone (the kernel's own ip=dhcp does the same). A DHCP client in the root
// may take the address over.
func Acquire(ctx context.Context, ifname, hostname string) (Lease, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return Lease{}, fmt.Errorf("finding %s: %w", ifname, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return Lease{}, fmt.Errorf("bringing %s up: %w", ifname, err)
	}
	var mods []dhcpv4.Modifier
	if hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(hostname)))
	}
	_, l, err := request(ctx, ifname, mods)
	if err != nil {
		return Lease{}, fmt.Errorf("DHCP on %s: %w", ifname, err)
	}
	permanent := l
	permanent.Duration = 0 // no lifetimes: the address stays
	if err := apply(link, permanent); err != nil {
		return Lease{}, err
	}
	return l, nil
}
