package inventory

import (
	"errors"
	"io/fs"

	"kiln.dev/kiln/services/vetting/inventory/smbios"
)

// dmi reads the raw SMBIOS table; without it (no firmware tables, or not
// root) it falls back to the kernel's /sys/class/dmi/id strings, which carry
// no CPU sockets or DIMMs.
func (c *collector) dmi() {
	table, err := c.r.fs.ReadFile("sys/firmware/dmi/tables/DMI")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			c.warn("SMBIOS: the firmware exposes no DMI table (sys/firmware/dmi/tables/DMI); no DIMM or socket details")
		} else {
			c.warn("SMBIOS: reading sys/firmware/dmi/tables/DMI: %v; no DIMM or socket details", err)
		}
		c.dmiID()
		return
	}
	if ep, err := c.r.fs.ReadFile("sys/firmware/dmi/tables/smbios_entry_point"); err == nil {
		if e, err := smbios.ParseEntryPoint(ep); err == nil {
			c.inv.SMBIOSVersion = e.Version
		}
	}
	structs, err := smbios.Parse(table)
	if err != nil {
		c.warn("SMBIOS: %v (using the %d structures before the damage)", err, len(structs))
	}
	t := smbios.Decode(structs)
	if t.BIOS != nil {
		c.inv.BIOS = BIOS{Vendor: t.BIOS.Vendor, Version: t.BIOS.Version, Date: t.BIOS.ReleaseDate}
	}
	if t.System != nil {
		s := t.System
		c.inv.System = System{Manufacturer: s.Manufacturer, Product: s.Product, Version: s.Version,
			Serial: s.Serial, UUID: s.UUID, SKU: s.SKU, Family: s.Family}
	}
	if len(t.Baseboards) > 0 {
		b := t.Baseboards[0]
		c.inv.Board = Board{Manufacturer: b.Manufacturer, Product: b.Product, Version: b.Version, Serial: b.Serial}
	}
	for _, p := range t.Processors {
		if p.Populated {
			c.smbiosCPUs = append(c.smbiosCPUs, smbiosCPU{socket: p.Socket, version: p.Version, maxMHz: p.MaxMHz})
		}
	}
	for _, m := range t.Memory {
		d := DIMM{Locator: m.Locator, Bank: m.BankLocator, SizeBytes: m.SizeBytes, ECC: m.ECC()}
		if m.SizeBytes < 0 {
			d.SizeBytes = 0
			c.warn("SMBIOS: DIMM %s reports an unknown size", m.Locator)
		}
		if d.SizeBytes > 0 {
			d.Type, d.FormFactor, d.SpeedMTs, d.ConfiguredMT = m.Type, m.FormFactor, m.SpeedMTs, m.ConfiguredMT
			d.Manufacturer, d.Serial, d.PartNumber = placeholder(m.Manufacturer), placeholder(m.Serial), placeholder(m.PartNumber)
			c.inv.Memory.InstalledBytes += d.SizeBytes
		}
		c.inv.Memory.DIMMs = append(c.inv.Memory.DIMMs, d)
	}
}

// placeholder drops the filler strings firmware writes for unknown values.
func placeholder(s string) string {
	switch s {
	case "Not Specified", "Unknown", "NO DIMM", "Empty", "To Be Filled By O.E.M.", "Default string":
		return ""
	}
	return s
}

func (c *collector) dmiID() {
	id := func(name string) string { return placeholder(c.r.strOr("sys/class/dmi/id/" + name)) }
	c.inv.System = System{Manufacturer: id("sys_vendor"), Product: id("product_name"), Version: id("product_version"),
		Serial: id("product_serial"), UUID: id("product_uuid"), SKU: id("product_sku"), Family: id("product_family")}
	c.inv.Board = Board{Manufacturer: id("board_vendor"), Product: id("board_name"), Version: id("board_version"),
		Serial: id("board_serial")}
	c.inv.BIOS = BIOS{Vendor: id("bios_vendor"), Version: id("bios_version"), Date: id("bios_date")}
}
