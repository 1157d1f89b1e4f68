package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// System reads and changes the links, addresses and routes of one network
// namespace over rtnetlink.
type System struct {
	h *netlink.Handle
	// ns is the namespace, or netns.None() for the process's own.
	ns netns.NsHandle
}

// OpenSystem opens the namespace ns (netns.None() for the caller's own).
// The handle is duplicated, so the caller may close ns.
func OpenSystem(ns netns.NsHandle) (*System, error) {
	s := &System{ns: netns.None()}
	if ns.IsOpen() {
		fd, err := unix.Dup(int(ns))
		if err != nil {
			return nil, fmt.Errorf("duplicating namespace handle: %w", err)
		}
		s.ns = netns.NsHandle(fd)
	}
	// Only rtnetlink: the default set includes XFRM, which a kernel without
	// xfrm_user (the image's) refuses with EPROTONOSUPPORT.
	var err error
	if s.ns.IsOpen() {
		s.h, err = netlink.NewHandleAt(s.ns, unix.NETLINK_ROUTE)
	} else {
		s.h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("opening rtnetlink: %w", err)
	}
	return s, nil
}

// Close releases the netlink sockets.
func (s *System) Close() {
	if s.h != nil {
		s.h.Close()
	}
	if s.ns.IsOpen() {
		s.ns.Close()
	}
}

// NetNSFd is the namespace's file descriptor, -1 for the process's own.
func (s *System) NetNSFd() int {
	if s.ns.IsOpen() {
		return int(s.ns)
	}
	return -1
}

// Do runs f with the calling thread in the namespace (sockets f opens stay
// there). Without a namespace it just calls f.
func (s *System) Do(f func() error) error {
	if !s.ns.IsOpen() {
		return f()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := netns.Set(s.ns); err != nil {
			errc <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// retryDump repeats a netlink dump the kernel interrupted (a concurrent change).
func retryDump[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for range 5 {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// Observe reads the links, their addresses and kiln's routes.
func (s *System) Observe() (Observed, error) {
	links, err := retryDump(s.h.LinkList)
	if err != nil {
		return Observed{}, fmt.Errorf("listing links: %w", err)
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return s.h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return Observed{}, fmt.Errorf("listing addresses: %w", err)
	}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return s.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return Observed{}, fmt.Errorf("listing routes: %w", err)
	}
	var obs Observed
	byIndex := map[int]int{}
	for _, l := range links {
		a := l.Attrs()
		o := Link{
			Index:   a.Index,
			Name:    a.Name,
			Kind:    l.Type(),
			Parent:  a.ParentIndex,
			Master:  a.MasterIndex,
			MTU:     a.MTU,
			Up:      a.Flags&net.FlagUp != 0,
			Alias:   a.Alias,
			Carrier: a.RawFlags&unix.IFF_LOWER_UP != 0,
			State:   a.OperState.String(),
		}
		if len(a.HardwareAddr) == 6 {
			o.MAC = a.HardwareAddr.String()
		}
		if v, ok := l.(*netlink.Vlan); ok {
			o.VLAN = v.VlanId
		}
		byIndex[o.Index] = len(obs.Links)
		obs.Links = append(obs.Links, o)
	}
	for _, a := range addrs {
		i, ok := byIndex[a.LinkIndex]
		if !ok || a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		obs.Links[i].Addrs = append(obs.Links[i].Addrs, Addr{
			Prefix:  netip.PrefixFrom(ip.Unmap(), ones),
			Dynamic: a.Flags&unix.IFA_F_PERMANENT == 0,
		})
	}
	for _, r := range routes {
		o := Route{Link: r.LinkIndex, Metric: r.Priority}
		if r.Dst != nil {
			ip, _ := netip.AddrFromSlice(r.Dst.IP)
			ones, _ := r.Dst.Mask.Size()
			o.Dst = netip.PrefixFrom(ip.Unmap(), ones)
		} else if r.Family == netlink.FAMILY_V6 {
			o.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		} else {
			o.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
		if g, ok := netip.AddrFromSlice(r.Gw); ok {
			o.Gw = g.Unmap()
		}
		obs.Routes = append(obs.Routes, o)
	}
	return obs, nil
}

func ipnet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// Apply runs the plan's steps in order and stops at the first error.
func (s *System) Apply(p Plan) error {
	for _, st := range p {
		if err := s.step(st); err != nil {
			return fmt.Errorf("%s: %w", st, err)
		}
	}
	return nil
}

func (s *System) link(name string) (netlink.Link, error) {
	l, err := s.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("finding link %s: %w", name, err)
	}
	return l, nil
}

func (s *System) step(st Step) error {
	var l netlink.Link
	var err error
	switch st.Op {
	case OpCreateBridge, OpCreateVLAN:
	case OpAddRoute, OpDelRoute:
		if st.Link != "" {
			l, err = s.link(st.Link)
		}
	default:
		l, err = s.link(st.Link)
	}
	if err != nil {
		if st.Op == OpDelete || st.Op == OpDelRoute {
			return nil // already gone (e.g. a vlan deleted with its bridge)
		}
		return err
	}
	switch st.Op {
	case OpDelete:
		return s.h.LinkDel(l)
	case OpRename:
		if err := s.h.LinkSetDown(l); err != nil {
			return err
		}
		return s.h.LinkSetName(l, st.To)
	case OpCreateBridge:
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: st.Link}}
		if err := s.h.LinkAdd(br); err != nil {
			return err
		}
		return s.h.LinkSetAlias(br, Alias)
	case OpCreateVLAN:
		parent, err := s.link(st.To)
		if err != nil {
			return err
		}
		v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: st.Link, ParentIndex: parent.Attrs().Index}, VlanId: st.VLAN}
		if err := s.h.LinkAdd(v); err != nil {
			return err
		}
		return s.h.LinkSetAlias(v, Alias)
	case OpNoMaster:
		return s.h.LinkSetNoMaster(l)
	case OpSetMaster:
		m, err := s.link(st.To)
		if err != nil {
			return err
		}
		return s.h.LinkSetMasterByIndex(l, m.Attrs().Index)
	case OpSetMTU:
		return s.h.LinkSetMTU(l, st.MTU)
	case OpDelAddr:
		return s.h.AddrDel(l, &netlink.Addr{IPNet: ipnet(st.Prefix)})
	case OpAddAddr:
		a := &netlink.Addr{IPNet: ipnet(st.Prefix)}
		if st.Prefix.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD // kiln's own static address: usable at once
		}
		return s.h.AddrAdd(l, a)
	case OpUp:
		return s.h.LinkSetUp(l)
	case OpAddRoute, OpDelRoute:
		r := &netlink.Route{Dst: ipnet(st.Prefix), Priority: st.Metric, Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}
		if st.Gw.IsValid() {
			r.Gw = st.Gw.AsSlice()
		}
		if l != nil {
			r.LinkIndex = l.Attrs().Index
		}
		if st.Op == OpDelRoute {
			if err := s.h.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
				return err
			}
			return nil
		}
		if !st.Gw.IsValid() {
			r.Scope = netlink.SCOPE_LINK
		}
		return s.h.RouteAdd(r)
	}
	return fmt.Errorf("unknown step %q", st.Op)
}

// Watch sends on the returned channel (without blocking: a pending signal
// is enough) whenever a link or address changes, until ctx is done.
func (s *System) Watch(ctx context.Context, onErr func(error)) (<-chan struct{}, error) {
	out := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() { <-ctx.Done(); close(done) }()
	lch := make(chan netlink.LinkUpdate, 64)
	ach := make(chan netlink.AddrUpdate, 64)
	var nsp *netns.NsHandle
	if s.ns.IsOpen() {
		ns := s.ns
		nsp = &ns
	}
	if err := netlink.LinkSubscribeWithOptions(lch, done, netlink.LinkSubscribeOptions{Namespace: nsp, ErrorCallback: onErr}); err != nil {
		return nil, fmt.Errorf("subscribing to link events: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(ach, done, netlink.AddrSubscribeOptions{Namespace: nsp, ErrorCallback: onErr}); err != nil {
		return nil, fmt.Errorf("subscribing to address events: %w", err)
	}
	poke := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	go func() {
		for {
			select {
			case _, ok := <-lch:
				if !ok {
					return
				}
				poke()
			case _, ok := <-ach:
				if !ok {
					return
				}
				poke()
			}
		}
	}()
	return out, nil
}

// SetForwarding turns IPv4 forwarding on in the namespace.
func (s *System) SetForwarding() error {
	return s.Do(func() error {
		if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil && string(b) == "1\n" {
			return nil
		}
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("enabling IPv4 forwarding: %w", err)
		}
		return nil
	})
}

// debounce waits until in has been quiet for quiet, then returns true; false if ctx ends.
func debounce(ctx context.Context, in <-chan struct{}, quiet time.Duration) bool {
	t := time.NewTimer(quiet)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-in:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
			t.Reset(quiet)
		case <-t.C:
			return true
		}
	}
}
