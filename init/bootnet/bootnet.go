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
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"kiln.dev/kiln/internal/atomicfile"
	"kiln.dev/kiln/internal/dhcplease"
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
type Lease = dhcplease.Lease

// keepLease brings ifname up and keeps a lease on it (kiln's one DHCP
// client, internal/dhcplease), with /run/resolv.conf following it, until
// ctx is done.
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
	k := &dhcplease.Keeper{Interface: ifname, Hostname: hostname, Log: log,
		Apply: func(l, prev *dhcplease.Lease) error {
			return dhcplease.Apply(dhcplease.Host{}, link, l, prev, 100+link.Attrs().Index)
		},
		OnLease: func(l *dhcplease.Lease) { r.set(ifname, *l) }}
	k.Run(ctx)
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
	l, err := dhcplease.Request(ctx, ifname, hostname)
	if err != nil {
		return Lease{}, fmt.Errorf("DHCP on %s: %w", ifname, err)
	}
	permanent := *l
	permanent.Duration = 0 // no lifetimes: the address stays
	if err := dhcplease.Apply(dhcplease.Host{}, link, &permanent, nil, 100+link.Attrs().Index); err != nil {
		return Lease{}, err
	}
	return *l, nil
}
