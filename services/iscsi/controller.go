package iscsi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"kiln.dev/kiln/services/store"
)

// DefaultPort is the iSCSI port (RFC 3720 §13.1 / IANA).
const DefaultPort = 3260

// Controller keeps LIO at the state the database asks for.
type Controller struct {
	Store    *store.Store
	Sealer   *Sealer
	Files    Files
	Configfs Configfs
	Names    Names
	// Subnets are the provisioning subnets: portals go on local addresses
	// inside them only.
	Subnets []netip.Prefix
	Port    uint16
	// LocalAddrs lists the appliance's addresses (net.InterfaceAddrs by default).
	LocalAddrs func() ([]netip.Addr, error)
	Logger     *slog.Logger
}

// Inputs reads the desired state's inputs. A host whose secret cannot be
// unsealed is left out (it gets no target) and reported in problems; the
// rest still apply.
func (c *Controller) Inputs(ctx context.Context) (in Inputs, problems []error, err error) {
	in.Names = c.Names
	addrs, err := c.localAddrs()
	if err != nil {
		return in, nil, err
	}
	in.Portals = Portals(c.Subnets, addrs, c.Port)
	inits, err := c.Store.Initiators(ctx)
	if err != nil {
		return in, nil, err
	}
	for _, i := range inits {
		chap, err := c.Sealer.Unseal(i)
		if err != nil {
			problems = append(problems, fmt.Errorf("%w (set new CHAP secrets: kiln volumes chap %s)", err, i.Host))
			continue
		}
		in.Initiators = append(in.Initiators, Initiator{Host: i.Host, IQN: i.IQN, CHAP: chap})
	}
	vols, err := c.Store.Volumes(ctx)
	if err != nil {
		return in, nil, err
	}
	for _, v := range vols {
		if v.Host == "" {
			continue // golden volumes are clone sources, exported to nobody
		}
		in.Volumes = append(in.Volumes, Volume{Host: v.Host, Name: v.Name, File: c.Files.Path(v.Host, v.Name), Size: v.Size})
	}
	return in, problems, nil
}

// Sync makes LIO hold the desired state and returns the steps it applied
// (none when LIO already agreed).
func (c *Controller) Sync(ctx context.Context) (Plan, error) {
	in, problems, err := c.Inputs(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range problems {
		c.Logger.Error("host left out of the iSCSI target", "err", p)
	}
	want, err := Desired(in)
	if err != nil {
		return nil, err
	}
	have, err := c.Configfs.Observe()
	if err != nil {
		return nil, err
	}
	p := Diff(have, want)
	if len(p) == 0 {
		return nil, nil
	}
	for _, s := range p {
		c.Logger.Info("applying", "step", s.String())
	}
	if err := c.Configfs.Apply(p); err != nil {
		return p, err
	}
	return p, nil
}

func (c *Controller) localAddrs() ([]netip.Addr, error) {
	if c.LocalAddrs != nil {
		return c.LocalAddrs()
	}
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing local addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range ifas {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out, nil
}

// errNoDomain is returned by Run when provisioning.domain is empty.
var errNoDomain = errors.New("the iscsi service needs provisioning.domain")
