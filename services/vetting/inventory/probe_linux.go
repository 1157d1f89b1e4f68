package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Devices runs NVMe and ATA commands on the device nodes in dir ("/dev"). It
// implements NVMeProber and ATAProber; it needs CAP_SYS_ADMIN and
// CAP_SYS_RAWIO (root in the live image).
type Devices struct{ Dir string }

var (
	_ NVMeProber = Devices{}
	_ ATAProber  = Devices{}
)

// nvmePassthru is struct nvme_passthru_cmd (linux/nvme_ioctl.h), 72 bytes.
type nvmePassthru struct {
	opcode      uint8
	flags       uint8
	rsvd1       uint16
	nsid        uint32
	cdw2, cdw3  uint32
	metadata    uint64
	addr        uint64
	metadataLen uint32
	dataLen     uint32
	cdw10       uint32
	cdw11       uint32
	cdw12       uint32
	cdw13       uint32
	cdw14       uint32
	cdw15       uint32
	timeoutMs   uint32
	result      uint32
}

// nvmeIoctlAdminCmd is _IOWR('N', 0x41, struct nvme_admin_cmd).
const nvmeIoctlAdminCmd = 0xc0484e41

func (d Devices) open(name string) (*os.File, error) {
	if name == "" || filepath.Base(name) != name {
		return nil, fmt.Errorf("device name %q: not a plain device name", name)
	}
	f, err := os.OpenFile(filepath.Join(d.Dir, name), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("opening device: %w", err)
	}
	return f, nil
}

func (d Devices) nvmeAdmin(ctrl string, cmd nvmePassthru, buf []byte) error {
	f, err := d.open(ctrl)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd.addr = uint64(uintptr(unsafe.Pointer(&buf[0])))
	cmd.dataLen = uint32(len(buf))
	cmd.timeoutMs = 10000
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), nvmeIoctlAdminCmd, uintptr(unsafe.Pointer(&cmd)))
	runtime.KeepAlive(buf)
	switch {
	case errno == unix.ENOTTY || errno == unix.EINVAL:
		return fmt.Errorf("NVMe admin command %#x on %s: %w", cmd.opcode, ctrl, ErrUnsupported)
	case errno != 0:
		return fmt.Errorf("NVMe admin command %#x on %s: %w", cmd.opcode, ctrl, errno)
	}
	return nil
}

// NVMeIdentify runs Identify (opcode 06h) with CNS 01h (controller).
func (d Devices) NVMeIdentify(ctrl string) ([]byte, error) {
	buf := make([]byte, 4096)
	if err := d.nvmeAdmin(ctrl, nvmePassthru{opcode: 0x06, cdw10: 1}, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// NVMeSMARTLog runs Get Log Page (opcode 02h) for the SMART / Health log
// (LID 02h, 128 dwords, all namespaces).
func (d Devices) NVMeSMARTLog(ctrl string) ([]byte, error) {
	buf := make([]byte, 512)
	cmd := nvmePassthru{opcode: 0x02, nsid: 0xffffffff, cdw10: (512/4-1)<<16 | 0x02}
	if err := d.nvmeAdmin(ctrl, cmd, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// sgIOHdr is struct sg_io_hdr (scsi/sg.h); Go's field alignment matches C's.
type sgIOHdr struct {
	interfaceID    int32
	dxferDirection int32
	cmdLen         uint8
	mxSbLen        uint8
	iovecCount     uint16
	dxferLen       uint32
	dxferp         unsafe.Pointer
	cmdp           unsafe.Pointer
	sbp            unsafe.Pointer
	timeout        uint32
	flags          uint32
	packID         int32
	usrPtr         unsafe.Pointer
	status         uint8
	maskedStatus   uint8
	msgStatus      uint8
	sbLenWr        uint8
	hostStatus     uint16
	driverStatus   uint16
	resid          int32
	duration       uint32
	info           uint32
}

const (
	sgIO            = 0x2285
	sgDxferNone     = -1
	sgDxferFromDev  = -3
	scsiCheckCond   = 0x02
	driverSense     = 0x08
	ataPassThru16   = 0x85
	ataIdentify     = 0xec
	ataSMART        = 0xb0
	smartReadData   = 0xd0
	smartReturnStat = 0xda
)

// ataCmd describes one ATA command sent through ATA PASS-THROUGH (16).
type ataCmd struct {
	command, features, lbaMid, lbaHigh byte
	dataIn                             bool // PIO data-in of one 512-byte sector, else non-data
	checkCond                          bool // ask for the result registers in the sense data
}

// ataPassThrough sends cmd to disk and returns the data and the sense buffer.
func (d Devices) ataPassThrough(disk string, cmd ataCmd) ([]byte, []byte, error) {
	f, err := d.open(disk)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	cdb := make([]byte, 16)
	cdb[0] = ataPassThru16
	var data []byte
	hdr := sgIOHdr{interfaceID: 'S', dxferDirection: sgDxferNone, timeout: 10000}
	if cmd.dataIn {
		cdb[1] = 4 << 1 // protocol: PIO data-in
		cdb[2] = 0x0e   // t_dir from device, byte_block, t_length in sector count
		cdb[6] = 1      // one sector
		data = make([]byte, 512)
		hdr.dxferDirection, hdr.dxferLen, hdr.dxferp = sgDxferFromDev, 512, unsafe.Pointer(&data[0])
	} else {
		cdb[1] = 3 << 1 // protocol: non-data
	}
	if cmd.checkCond {
		cdb[2] |= 0x20
	}
	cdb[4], cdb[10], cdb[12], cdb[14] = cmd.features, cmd.lbaMid, cmd.lbaHigh, cmd.command
	sense := make([]byte, 32)
	hdr.cmdLen, hdr.cmdp = uint8(len(cdb)), unsafe.Pointer(&cdb[0])
	hdr.mxSbLen, hdr.sbp = uint8(len(sense)), unsafe.Pointer(&sense[0])
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), sgIO, uintptr(unsafe.Pointer(&hdr)))
	runtime.KeepAlive(cdb)
	runtime.KeepAlive(data)
	runtime.KeepAlive(sense)
	switch {
	case errno == unix.ENOTTY || errno == unix.EINVAL:
		return nil, nil, fmt.Errorf("ATA command %#x on %s: %w", cmd.command, disk, ErrUnsupported)
	case errno != 0:
		return nil, nil, fmt.Errorf("ATA command %#x on %s: %w", cmd.command, disk, errno)
	case hdr.hostStatus != 0:
		return nil, nil, fmt.Errorf("ATA command %#x on %s: host status %#x", cmd.command, disk, hdr.hostStatus)
	}
	sense = sense[:hdr.sbLenWr]
	if hdr.status == scsiCheckCond || hdr.driverStatus&driverSense != 0 {
		if senseKey(sense) == 0x05 { // ILLEGAL REQUEST: not an ATA device behind this SCSI disk
			return nil, nil, fmt.Errorf("ATA command %#x on %s: %w", cmd.command, disk, ErrUnsupported)
		}
		if !cmd.checkCond {
			if _, st, ok := ataRegisters(sense); !ok || st&0x01 != 0 {
				return nil, nil, fmt.Errorf("ATA command %#x on %s: device reported an error (sense % x)", cmd.command, disk, sense)
			}
		}
	} else if hdr.status != 0 {
		return nil, nil, fmt.Errorf("ATA command %#x on %s: SCSI status %#x", cmd.command, disk, hdr.status)
	}
	return data, sense, nil
}

// senseKey returns the sense key of fixed (70h/71h) or descriptor (72h/73h)
// sense data, -1 when there is none.
func senseKey(s []byte) int {
	if len(s) < 3 {
		return -1
	}
	switch s[0] & 0x7f {
	case 0x70, 0x71:
		return int(s[2] & 0x0f)
	case 0x72, 0x73:
		return int(s[1] & 0x0f)
	}
	return -1
}

// ataRegisters extracts LBA mid/high and the ATA status from sense data
// returned with CK_COND: the ATA Status Return descriptor (09h) of
// descriptor sense, or the fixed format's information fields.
func ataRegisters(s []byte) (midHigh [2]byte, status byte, ok bool) {
	if len(s) < 8 {
		return midHigh, 0, false
	}
	switch s[0] & 0x7f {
	case 0x72, 0x73:
		for off := 8; off+1 < len(s); {
			dl := int(s[off+1])
			if s[off] == 0x09 && off+13 < len(s) && dl >= 12 {
				return [2]byte{s[off+9], s[off+11]}, s[off+13], true
			}
			off += 2 + dl
		}
	case 0x70, 0x71:
		if len(s) >= 12 {
			return [2]byte{s[10], s[11]}, s[4], true
		}
	}
	return midHigh, 0, false
}

// ATAIdentify runs IDENTIFY DEVICE (ECh).
func (d Devices) ATAIdentify(disk string) ([]byte, error) {
	data, _, err := d.ataPassThrough(disk, ataCmd{command: ataIdentify, dataIn: true})
	return data, err
}

// ATASMARTStatus runs SMART RETURN STATUS: LBA mid/high come back as
// 4Fh/C2h when no threshold is exceeded and F4h/2Ch when one is.
func (d Devices) ATASMARTStatus(disk string) (bool, error) {
	_, sense, err := d.ataPassThrough(disk, ataCmd{command: ataSMART, features: smartReturnStat,
		lbaMid: 0x4f, lbaHigh: 0xc2, checkCond: true})
	if err != nil {
		return false, err
	}
	regs, _, ok := ataRegisters(sense)
	switch {
	case !ok:
		return false, errors.New("SMART RETURN STATUS: no result registers in the sense data")
	case regs == [2]byte{0x4f, 0xc2}:
		return true, nil
	case regs == [2]byte{0xf4, 0x2c}:
		return false, nil
	}
	return false, fmt.Errorf("SMART RETURN STATUS: unexpected LBA mid/high %#x/%#x", regs[0], regs[1])
}

// ATASMARTData runs SMART READ DATA.
func (d Devices) ATASMARTData(disk string) ([]byte, error) {
	data, _, err := d.ataPassThrough(disk, ataCmd{command: ataSMART, features: smartReadData,
		lbaMid: 0x4f, lbaHigh: 0xc2, dataIn: true})
	return data, err
}
