package inventory

import (
	"strconv"
	"strings"
)

// parseLinkSpeed reads "8.0 GT/s PCIe" (or the older "8 GT/s"); 0 for
// "Unknown" or anything else.
func parseLinkSpeed(s string) float64 {
	f := strings.Fields(s)
	if len(f) < 2 || f[1] != "GT/s" {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

func (c *collector) pcie() {
	for _, addr := range c.r.names("sys/bus/pci/devices") {
		base := "sys/bus/pci/devices/" + addr
		class := c.r.strOr(base + "/class")
		if strings.HasPrefix(class, "0x0604") || strings.HasPrefix(class, "0x0600") {
			continue // bridges: their links are reported by the endpoints below them
		}
		p := PCIe{
			Address:     addr,
			Class:       class,
			Vendor:      c.r.strOr(base + "/vendor"),
			Device:      c.r.strOr(base + "/device"),
			Driver:      c.r.linkBase(base + "/driver"),
			SpeedGTs:    parseLinkSpeed(c.r.strOr(base + "/current_link_speed")),
			MaxSpeedGTs: parseLinkSpeed(c.r.strOr(base + "/max_link_speed")),
			Width:       int(c.r.int64Or(base+"/current_link_width", 0)),
			MaxWidth:    int(c.r.int64Or(base+"/max_link_width", 0)),
		}
		if p.MaxSpeedGTs == 0 || p.MaxWidth < 1 || p.MaxWidth > 32 {
			// Conventional PCI, a virtual function, or a root complex
			// integrated endpoint (QEMU's q35 devices report speed
			// "Unknown" and width 255): no link to judge.
			continue
		}
		p.Degraded = p.SpeedGTs < p.MaxSpeedGTs || p.Width < p.MaxWidth
		c.inv.PCIe = append(c.inv.PCIe, p)
	}
}
