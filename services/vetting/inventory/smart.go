package inventory

import (
	"errors"
	"fmt"
)

// SMARTReader reads the SMART summary of an inventory's disks again, for
// stages that compare health before and after a load.
type SMARTReader struct {
	Disks []Disk
	NVMe  NVMeProber
	ATA   ATAProber
}

// SMART returns the named disk's summary, or nil and no error when the disk
// offers none (virtio, USB, an unknown name, a device refusing the command).
func (r SMARTReader) SMART(name string) (*SMART, error) {
	var d *Disk
	for i := range r.Disks {
		if r.Disks[i].Name == name {
			d = &r.Disks[i]
		}
	}
	switch {
	case d == nil:
		return nil, nil
	case d.Transport == "nvme" && r.NVMe != nil && d.Controller != "":
		b, err := r.NVMe.NVMeSMARTLog(d.Controller)
		if err != nil {
			return nil, unsupportedIsNone(err)
		}
		s, err := ParseNVMeSMART(b)
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", name, err)
		}
		return &s, nil
	case (d.Transport == "ata" || d.Vendor == "ATA") && r.ATA != nil:
		passed, err := r.ATA.ATASMARTStatus(name)
		if err != nil {
			return nil, unsupportedIsNone(err)
		}
		data, err := r.ATA.ATASMARTData(name)
		if err != nil {
			return nil, unsupportedIsNone(err)
		}
		s, err := ParseATASMART(data, passed)
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", name, err)
		}
		return &s, nil
	}
	return nil, nil
}

func unsupportedIsNone(err error) error {
	if errors.Is(err, ErrUnsupported) {
		return nil
	}
	return err
}
