package inventory

import "kiln.dev/kiln/services/vetting/spec"

// FactNames documents the facts Facts produces; <disk>, <nic> and <pci> stand
// for a device name ("nvme0n1", "eno1") and a PCI address ("0000:b1:00.0").
// Strings that are empty (not reported by the firmware) are left out, so an
// expectation on them reports "missing" rather than comparing with "".
var FactNames = []string{
	"kernel",
	"system.manufacturer", "system.product", "system.version", "system.serial", "system.uuid", "system.sku", "system.family",
	"board.manufacturer", "board.product", "board.version", "board.serial",
	"bios.vendor", "bios.version", "bios.date",
	"cpu.model", "cpu.models", "cpu.vendor", "cpu.sockets", "cpu.cores", "cpu.threads", "cpu.max_mhz",
	"memory.usable_bytes", "memory.installed_bytes", "memory.dimms", "memory.slots", "memory.dimm_sizes",
	"memory.dimm_types", "memory.dimm_speeds_mts", "memory.dimm_part_numbers", "memory.ecc",
	"disks.count", "disks.models", "disks.serials", "disks.size_bytes", "disks.total_bytes", "disks.transports",
	"disks.rotational", "disks.smart_health",
	"disk.<disk>.model", "disk.<disk>.serial", "disk.<disk>.firmware", "disk.<disk>.size_bytes",
	"disk.<disk>.rotational", "disk.<disk>.transport", "disk.<disk>.smart_health",
	"nics.count", "nics.macs", "nics.drivers", "nics.with_carrier", "nics.speed_mbps",
	"nic.<nic>.mac", "nic.<nic>.driver", "nic.<nic>.carrier", "nic.<nic>.speed_mbps", "nic.<nic>.pci",
	"pcie.links", "pcie.degraded_links",
	"pcie.<pci>.speed_gts", "pcie.<pci>.max_speed_gts", "pcie.<pci>.width", "pcie.<pci>.max_width",
}

// UnitMTs is the unit of memory transfer rates.
const UnitMTs = "MT/s"

// Facts flattens the inventory into the named values specs are checked
// against (see FactNames). Aggregates over disks leave out removable media
// (and disks.models / disks.serials leave out disks that report none);
// nics.speed_mbps lists the NICs with carrier.
func (inv Inventory) Facts() spec.Facts {
	f := spec.Facts{}
	str := func(name, v string) {
		if v != "" {
			f[name] = spec.String(v)
		}
	}
	str("kernel", inv.Kernel)
	str("system.manufacturer", inv.System.Manufacturer)
	str("system.product", inv.System.Product)
	str("system.version", inv.System.Version)
	str("system.serial", inv.System.Serial)
	str("system.uuid", inv.System.UUID)
	str("system.sku", inv.System.SKU)
	str("system.family", inv.System.Family)
	str("board.manufacturer", inv.Board.Manufacturer)
	str("board.product", inv.Board.Product)
	str("board.version", inv.Board.Version)
	str("board.serial", inv.Board.Serial)
	str("bios.vendor", inv.BIOS.Vendor)
	str("bios.version", inv.BIOS.Version)
	str("bios.date", inv.BIOS.Date)

	str("cpu.model", inv.CPU.Model)
	str("cpu.vendor", inv.CPU.Vendor)
	if len(inv.CPU.Packages) > 0 {
		models := make([]string, 0, len(inv.CPU.Packages))
		for _, p := range inv.CPU.Packages {
			models = append(models, p.Model)
		}
		f["cpu.models"] = spec.Strings(models...)
		f["cpu.sockets"] = spec.Int(inv.CPU.Sockets)
		f["cpu.cores"] = spec.Int(inv.CPU.Cores)
		f["cpu.threads"] = spec.Int(inv.CPU.Threads)
	}
	if inv.CPU.MaxMHz > 0 {
		f["cpu.max_mhz"] = spec.Number(float64(inv.CPU.MaxMHz), spec.UnitMHz)
	}

	if inv.Memory.UsableBytes > 0 {
		f["memory.usable_bytes"] = spec.Number(float64(inv.Memory.UsableBytes), spec.UnitBytes)
	}
	if len(inv.Memory.DIMMs) > 0 {
		var sizes, speeds []float64
		var types, parts []string
		ecc := true
		for _, d := range inv.Memory.DIMMs {
			if d.SizeBytes <= 0 {
				continue
			}
			sizes = append(sizes, float64(d.SizeBytes))
			types = append(types, d.Type)
			if d.SpeedMTs > 0 {
				speeds = append(speeds, float64(d.SpeedMTs))
			}
			if d.PartNumber != "" {
				parts = append(parts, d.PartNumber)
			}
			ecc = ecc && d.ECC
		}
		f["memory.slots"] = spec.Int(len(inv.Memory.DIMMs))
		f["memory.dimms"] = spec.Int(len(sizes))
		f["memory.installed_bytes"] = spec.Number(float64(inv.Memory.InstalledBytes), spec.UnitBytes)
		f["memory.dimm_sizes"] = spec.Numbers(spec.UnitBytes, sizes...)
		f["memory.dimm_types"] = spec.Strings(types...)
		f["memory.dimm_speeds_mts"] = spec.Numbers(UnitMTs, speeds...)
		f["memory.dimm_part_numbers"] = spec.Strings(parts...)
		f["memory.ecc"] = spec.Bool(ecc && len(sizes) > 0)
	}

	var models, serials, transports, health []string
	var sizes []float64
	var total float64
	var rotational, count int
	for _, d := range inv.Disks {
		p := "disk." + d.Name + "."
		str(p+"model", d.Model)
		str(p+"serial", d.Serial)
		str(p+"firmware", d.Firmware)
		str(p+"transport", d.Transport)
		f[p+"size_bytes"] = spec.Number(float64(d.SizeBytes), spec.UnitBytes)
		f[p+"rotational"] = spec.Bool(d.Rotational)
		if d.SMART != nil {
			f[p+"smart_health"] = spec.String(d.SMART.Health)
		}
		if d.Removable {
			continue
		}
		count++
		if d.Model != "" {
			models = append(models, d.Model)
		}
		if d.Serial != "" {
			serials = append(serials, d.Serial)
		}
		transports = append(transports, d.Transport)
		sizes = append(sizes, float64(d.SizeBytes))
		total += float64(d.SizeBytes)
		if d.Rotational {
			rotational++
		}
		if d.SMART != nil {
			health = append(health, d.SMART.Health)
		}
	}
	f["disks.count"] = spec.Int(count)
	f["disks.models"] = spec.Strings(models...)
	f["disks.serials"] = spec.Strings(serials...)
	f["disks.transports"] = spec.Strings(transports...)
	f["disks.size_bytes"] = spec.Numbers(spec.UnitBytes, sizes...)
	f["disks.total_bytes"] = spec.Number(total, spec.UnitBytes)
	f["disks.rotational"] = spec.Int(rotational)
	f["disks.smart_health"] = spec.Strings(health...)

	var macs, drivers []string
	var speeds []float64
	carrier := 0
	for _, n := range inv.NICs {
		p := "nic." + n.Name + "."
		str(p+"mac", n.MAC)
		str(p+"driver", n.Driver)
		str(p+"pci", n.PCI)
		f[p+"carrier"] = spec.Bool(n.Carrier)
		f[p+"speed_mbps"] = spec.Number(float64(n.SpeedMbps), spec.UnitMbps)
		macs = append(macs, n.MAC)
		drivers = append(drivers, n.Driver)
		if n.Carrier {
			carrier++
			speeds = append(speeds, float64(n.SpeedMbps))
		}
	}
	f["nics.count"] = spec.Int(len(inv.NICs))
	f["nics.macs"] = spec.Strings(macs...)
	f["nics.drivers"] = spec.Strings(drivers...)
	f["nics.with_carrier"] = spec.Int(carrier)
	f["nics.speed_mbps"] = spec.Numbers(spec.UnitMbps, speeds...)

	degraded := 0
	for _, l := range inv.PCIe {
		p := "pcie." + l.Address + "."
		f[p+"speed_gts"] = spec.Number(l.SpeedGTs, spec.UnitGTs)
		f[p+"max_speed_gts"] = spec.Number(l.MaxSpeedGTs, spec.UnitGTs)
		f[p+"width"] = spec.Int(l.Width)
		f[p+"max_width"] = spec.Int(l.MaxWidth)
		if l.Degraded {
			degraded++
		}
	}
	f["pcie.links"] = spec.Int(len(inv.PCIe))
	f["pcie.degraded_links"] = spec.Int(degraded)
	return f
}
