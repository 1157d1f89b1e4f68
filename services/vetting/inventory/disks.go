package inventory

import (
	"errors"
	"strings"
)

// skippedBlock are block device name prefixes that are not disks.
var skippedBlock = []string{"loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd", "mtdblock", "drbd", "rbd"}

func (c *collector) disks() {
	for _, name := range c.r.names("sys/block") {
		if skipBlock(name) {
			continue
		}
		base := "sys/block/" + name
		if _, err := c.r.fs.Readlink(base + "/device"); err != nil {
			continue // no backing device: virtual
		}
		devpath, err := c.r.realpath(base)
		if err != nil {
			c.warn("disk %s: resolving %s: %v", name, base, err)
			continue
		}
		d := Disk{
			Name:          name,
			Transport:     transport(devpath),
			SizeBytes:     c.r.int64Or(base+"/size", 0) * 512,
			LogicalBlock:  int(c.r.int64Or(base+"/queue/logical_block_size", 512)),
			PhysicalBlock: int(c.r.int64Or(base+"/queue/physical_block_size", 512)),
			Rotational:    c.r.int64Or(base+"/queue/rotational", 0) == 1,
			Removable:     c.r.int64Or(base+"/removable", 0) == 1,
			PCI:           pciAddress(devpath),
			Model:         strings.Join(strings.Fields(c.r.strOr(base+"/device/model")), " "),
			WWN:           c.r.strOr(base + "/wwid"),
		}
		if d.WWN == "" {
			d.WWN = c.r.strOr(base + "/device/wwid")
		}
		switch d.Transport {
		case "nvme":
			d.Serial = c.r.strOr(base + "/device/serial")
			d.Firmware = c.r.strOr(base + "/device/firmware_rev")
			d.Controller = c.r.linkBase(base + "/device")
			c.probeNVMe(&d)
		case "virtio":
			d.Serial = c.r.strOr(base + "/serial")
		default:
			d.Vendor = c.r.strOr(base + "/device/vendor")
			d.Firmware = c.r.strOr(base + "/device/rev")
			if pg80, err := c.r.fs.ReadFile(base + "/device/vpd_pg80"); err == nil && len(pg80) > 4 {
				d.Serial = asciiField(pg80[4:])
			}
			if d.Transport == "ata" || d.Vendor == "ATA" {
				c.probeATA(&d)
			}
		}
		c.inv.Disks = append(c.inv.Disks, d)
	}
}

func skipBlock(name string) bool {
	for _, p := range skippedBlock {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// transport tells the bus from the canonical device path.
func transport(devpath string) string {
	parts := strings.Split(devpath, "/")
	for _, p := range parts {
		switch {
		case p == "nvme" || strings.HasPrefix(p, "nvme-subsys"):
			return "nvme"
		case strings.HasPrefix(p, "virtio") && !strings.HasPrefix(p, "virtio-"):
			return "virtio"
		case strings.HasPrefix(p, "usb"):
			return "usb"
		case strings.HasPrefix(p, "mmc_host") || strings.HasPrefix(p, "mmc"):
			return "mmc"
		}
	}
	for _, p := range parts {
		if strings.HasPrefix(p, "ata") && len(p) > 3 && p[3] >= '0' && p[3] <= '9' {
			return "ata"
		}
	}
	for _, p := range parts {
		if strings.HasPrefix(p, "host") || strings.HasPrefix(p, "target") {
			return "scsi"
		}
	}
	return ""
}

func (c *collector) probeNVMe(d *Disk) {
	if c.nvme == nil || d.Controller == "" {
		return
	}
	if b, err := c.nvme.NVMeIdentify(d.Controller); err != nil {
		c.warnProbe(d.Name, "NVMe identify", err)
	} else if id, err := ParseNVMeIdentify(b); err != nil {
		c.warn("disk %s: %v", d.Name, err)
	} else {
		d.Model = or(d.Model, id.Model)
		d.Serial = or(d.Serial, id.Serial)
		d.Firmware = or(d.Firmware, id.Firmware)
	}
	if b, err := c.nvme.NVMeSMARTLog(d.Controller); err != nil {
		c.warnProbe(d.Name, "NVMe SMART log", err)
	} else if s, err := ParseNVMeSMART(b); err != nil {
		c.warn("disk %s: %v", d.Name, err)
	} else {
		d.SMART = &s
	}
}

func (c *collector) probeATA(d *Disk) {
	if c.ata == nil {
		return
	}
	b, err := c.ata.ATAIdentify(d.Name)
	if err != nil {
		c.warnProbe(d.Name, "ATA identify", err)
		return
	}
	id, err := ParseATAIdentify(b)
	if err != nil {
		c.warn("disk %s: %v", d.Name, err)
		return
	}
	// IDENTIFY is the drive's own word; sysfs truncates the model to 16
	// characters behind the SCSI translation.
	d.Model = or(id.Model, d.Model)
	d.Serial = or(id.Serial, d.Serial)
	d.Firmware = or(id.Firmware, d.Firmware)
	if id.RPM > 1 {
		d.RPM = id.RPM
	}
	if d.WWN == "" && id.WWN != "" && id.WWN != "0000000000000000" {
		d.WWN = "naa." + id.WWN
	}
	if !id.SMARTSupport || !id.SMARTEnabled {
		return
	}
	passed, err := c.ata.ATASMARTStatus(d.Name)
	if err != nil {
		c.warnProbe(d.Name, "ATA SMART status", err)
		return
	}
	data, err := c.ata.ATASMARTData(d.Name)
	if err != nil {
		c.warnProbe(d.Name, "ATA SMART data", err)
		data = make([]byte, 512)
	}
	if s, err := ParseATASMART(data, passed); err == nil {
		d.SMART = &s
	}
}

// warnProbe reports a failed device command, quietly for devices that do not
// speak the command set.
func (c *collector) warnProbe(disk, what string, err error) {
	if errors.Is(err, ErrUnsupported) {
		return
	}
	c.warn("disk %s: %s: %v", disk, what, err)
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
