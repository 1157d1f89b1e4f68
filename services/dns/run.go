package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
)

// Run is the DNS service's entry point: it serves the provisioning section's
// domain and subnets from the machine database in env.StateDir.
func Run(ctx context.Context, env svc.Env) error {
	st, err := store.Open(ctx, store.Path(env.StateDir))
	if err != nil {
		return fmt.Errorf("opening the machine database: %w", err)
	}
	defer st.Close()
	o := OptionsFromConfig(env.Config, localAddrs())
	o.Metrics = env.Metrics
	s, err := New(ctx, o, storeSource{st: st, now: time.Now}, env.Logger)
	if err != nil {
		return err
	}
	pc, ln, err := Listen(o.Listen)
	if err != nil {
		return err
	}
	return s.Serve(ctx, pc, ln, env.Ready)
}

// OptionsFromConfig maps the appliance config to server options; self are
// the appliance's own addresses (those inside a subnet become the NS's A
// records).
func OptionsFromConfig(c config.Config, self []netip.Addr) Options {
	o := DefaultOptions()
	p := c.Provisioning
	o.Listen = p.DNSListen()
	o.Domain = p.Domain
	o.Upstreams = p.UpstreamDNS
	o.NSName = c.Hostname
	for _, s := range p.Subnets {
		pfx := s.Prefix()
		if !pfx.IsValid() {
			continue
		}
		o.Subnets = append(o.Subnets, pfx)
		for _, a := range self {
			if pfx.Contains(a) {
				o.NSAddrs = append(o.NSAddrs, a)
			}
		}
	}
	return o
}

func localAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}
