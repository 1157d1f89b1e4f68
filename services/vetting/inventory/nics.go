package inventory

import "strings"

func (c *collector) nics() {
	for _, name := range c.r.names("sys/class/net") {
		base := "sys/class/net/" + name
		if _, err := c.r.fs.Readlink(base + "/device"); err != nil {
			continue // loopback, bridges, bonds, veth, tunnels
		}
		n := NIC{
			Name:      name,
			MAC:       strings.ToLower(c.r.strOr(base + "/address")),
			Driver:    c.r.linkBase(base + "/device/driver"),
			Carrier:   c.r.strOr(base+"/carrier") == "1",
			Operstate: c.r.strOr(base + "/operstate"),
			Duplex:    c.r.strOr(base + "/duplex"),
			MTU:       int(c.r.int64Or(base+"/mtu", 0)),
		}
		if dev, err := c.r.realpath(base + "/device"); err == nil {
			n.PCI = pciAddress(dev)
		}
		// speed is -1 or unreadable (EINVAL) without a link.
		if s := c.r.int64Or(base+"/speed", -1); n.Carrier && s > 0 {
			n.SpeedMbps = int(s)
		}
		c.inv.NICs = append(c.inv.NICs, n)
	}
}
