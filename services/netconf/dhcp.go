package netconf

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"kiln.dev/kiln/internal/dhcplease"
)

// Lease is what a DHCPv4 server gave an interface.
type Lease = dhcplease.Lease

// dhcpClient keeps a lease on one interface of the system's namespace with
// kiln's one DHCP client.
type dhcpClient struct {
	sys      *System
	ifname   string
	hostname string
	metric   int // of the default route through the lease's router
	log      *slog.Logger
	// onLease is told about every lease applied, and an empty one when it is lost.
	onLease func(*Lease)
}

func (d *dhcpClient) run(ctx context.Context) {
	k := &dhcplease.Keeper{Interface: d.ifname, Hostname: d.hostname, Log: d.log, OnLease: d.onLease,
		Open: func(ifname string) (c *nclient4.Client, err error) {
			err = d.sys.Do(func() (err error) {
				c, err = dhcplease.Open(ifname)
				return err
			})
			return c, err
		},
		Apply: d.apply}
	k.Run(ctx)
}

// apply puts the lease on the interface in the system's namespace.
func (d *dhcpClient) apply(l, prev *Lease) error {
	link, err := d.sys.h.LinkByName(d.ifname)
	if err != nil {
		return fmt.Errorf("finding %s: %w", d.ifname, err)
	}
	return dhcplease.Apply(d.sys.h, link, l, prev, d.metric)
}
