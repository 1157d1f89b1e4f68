package qemu

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// Default host paths of the firmware and the emulator (Debian packages ovmf and
// qemu-system-x86).
const (
	DefaultBinary   = "qemu-system-x86_64"
	DefaultOVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	DefaultOVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Firmware selects what the VM boots with.
type Firmware string

const (
	// UEFI boots OVMF from pflash (code read-only, a per-VM copy of the vars).
	UEFI Firmware = "uefi"
	// BIOS boots QEMU's default SeaBIOS.
	BIOS Firmware = "bios"
)

// Config describes one VM. The zero value plus WorkDir is a UEFI VM with 1 GiB
// of memory, two vCPUs, a watchdog and no disks or NICs.
type Config struct {
	// WorkDir holds the VM's files: the OVMF vars copy (vars.fd) and the
	// serial log (serial.log). It is created if missing and must be private to
	// one VM at a time.
	WorkDir string

	// Binary is the emulator; DefaultBinary if empty.
	Binary string
	// Firmware is UEFI (default) or BIOS.
	Firmware Firmware
	// OVMFCode and OVMFVars are the firmware images; the defaults are Debian's
	// 4M builds. OVMFVars is copied into WorkDir once and reused afterwards, so a
	// VM keeps its NVRAM across restarts with the same WorkDir.
	OVMFCode, OVMFVars string

	// MemoryMiB is the guest memory; 1024 if zero.
	MemoryMiB int
	// CPUs is the number of vCPUs; 2 if zero.
	CPUs int

	// Disks are attached as virtio-blk in order (the first is /dev/vda).
	Disks []Disk
	// CDROM, if set, is an ISO image in a SATA CD-ROM drive, first in the
	// firmware's boot order (the guest's /dev/sr0).
	CDROM string
	// Mgmt, if set, adds the management NIC on user networking with host
	// port forwards to the guest's 443 and 80.
	Mgmt *Mgmt
	// NICs are extra NICs on private loopback L2 segments.
	NICs []NIC

	// NoWatchdog leaves out the i6300esb watchdog device.
	NoWatchdog bool
	// FwCfg are files handed to the guest through QEMU's firmware
	// configuration device (the appliance reads opt/kiln/<name>, see
	// init/pid1/fwcfg.go).
	FwCfg []FwCfg
	// SerialLog is where the serial console is captured; WorkDir/serial.log
	// if empty. It is truncated when the VM starts.
	SerialLog string

	// Kernel, if set, boots this kernel image directly (QEMU's -kernel) with
	// Initrd and Append instead of booting a disk; the firmware only hands
	// over to it (SeaBIOS with BIOS does so in well under a second).
	Kernel string
	// Initrd is the initramfs of a direct kernel boot; none if empty.
	Initrd string
	// Append is the kernel command line of a direct kernel boot.
	Append string
	// VirtFS are host directories shared with the guest over virtio-9p
	// (QEMU's local fsdriver); the guest mounts them by tag with -t 9p
	// -o trans=virtio.
	VirtFS []VirtFS
	// Consoles are virtio consoles, the guest's /dev/hvc0, hvc1, … in order,
	// each connected to a unix socket path the caller already listens on
	// (QEMU connects as a client while it starts).
	Consoles []string
	// RNG adds a virtio RNG seeded from the host's /dev/urandom.
	RNG bool
	// NoReboot makes a guest reboot exit QEMU instead (-no-reboot): a guest
	// kernel that panics with panic=-1 ends the VM at once.
	NoReboot bool
	// NoNIC states that the VM has no network device besides Mgmt and NICs
	// (-nic none), so QEMU never adds its default one.
	NoNIC bool
	// Extra is appended to the command line as is.
	Extra []string
}

// Disk is one virtio block device.
type Disk struct {
	// Path is the image file.
	Path string
	// Format is "qcow2" or "raw"; guessed from the file name (".qcow2") if empty.
	Format string
	// ReadOnly attaches the disk read-only.
	ReadOnly bool
	// Snapshot discards every write when QEMU exits (QEMU's snapshot=on).
	Snapshot bool
	// Serial is the serial number the guest reads (virtio-blk holds at most
	// 20 bytes); none if empty. Give every disk a serial or none: the two
	// kinds are created in different passes, which may change their order.
	Serial string
}

// VirtFS is one host directory exported over virtio-9p.
type VirtFS struct {
	// Tag is the mount tag the guest names (at most 31 bytes, no commas).
	Tag string
	// Path is the host directory.
	Path string
	// ReadOnly makes QEMU refuse every write, whatever the guest tries.
	ReadOnly bool
	// SecurityModel is QEMU's security_model: "none" (default: files are
	// accessed and created as QEMU's own user, owners and modes pass through
	// on reads), "passthrough" or "mapped-xattr".
	SecurityModel string
}

// FwCfg is one fw_cfg file: the guest sees File's contents under Name
// (e.g. "opt/kiln/config").
type FwCfg struct {
	Name, File string
}

// Mgmt is the management NIC: QEMU user networking (slirp) with the guest's
// HTTPS and HTTP ports forwarded from 127.0.0.1 on the host.
type Mgmt struct {
	// HTTPSPort and HTTPPort are host ports on 127.0.0.1 forwarded to the
	// guest's 443 and 80. Zero picks a free port when the VM starts; a negative
	// value leaves that forward out.
	HTTPSPort, HTTPPort int
	// MAC is the NIC's address; DefaultMgmtMAC if empty.
	MAC string
	// Outbound lets the guest reach beyond the host (DNS, NTP, downloads).
	// Off by default: with restrict=on slirp drops everything the guest sends
	// except replies on forwarded connections, so tests never leak traffic.
	Outbound bool
	// Pcap, if set, is a file QEMU writes the NIC's traffic to (filter-dump).
	Pcap string
}

// DefaultMgmtMAC is the management NIC's MAC unless configured.
const DefaultMgmtMAC = "52:54:00:6b:6c:01"

// NICKind is the transport of an extra NIC's L2 segment.
type NICKind string

const (
	// Dgram is `-netdev dgram` between two UDP ports on 127.0.0.1: a point to
	// point segment between exactly two VMs (or a VM and a test program).
	Dgram NICKind = "dgram"
	// Mcast is `-netdev socket,mcast=` on a multicast group bound to
	// 127.0.0.1: any number of VMs on one segment.
	Mcast NICKind = "mcast"
)

// NIC is an extra network card on a private L2 segment that stays on loopback.
type NIC struct {
	Kind NICKind
	// LocalPort and RemotePort are the UDP ports on 127.0.0.1 of a Dgram NIC:
	// this VM receives on LocalPort and sends to RemotePort.
	LocalPort, RemotePort int
	// Group is the Mcast segment's "group:port", e.g. "230.0.0.1:47010".
	Group string
	// MAC is the card's address; required (pick distinct ones per segment).
	MAC string
	// Model is the QEMU device; "virtio-net-pci" if empty ("e1000" also works).
	Model string
	// ROMFile overrides the option ROM (iPXE from Debian's ipxe-qemu is the
	// default, e.g. /usr/lib/ipxe/qemu/efi-virtio.rom).
	ROMFile string
	// Boot makes this NIC the first boot device (PXE / UEFI network boot).
	Boot bool
	// Pcap, if set, is a file QEMU writes the NIC's traffic to (filter-dump).
	Pcap string
}

// ErrConfig marks a Config that cannot be turned into a command line.
var ErrConfig = errors.New("invalid VM config")

func (c Config) withDefaults() Config {
	if c.Binary == "" {
		c.Binary = DefaultBinary
	}
	if c.Firmware == "" {
		c.Firmware = UEFI
	}
	if c.OVMFCode == "" {
		c.OVMFCode = DefaultOVMFCode
	}
	if c.OVMFVars == "" {
		c.OVMFVars = DefaultOVMFVars
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = 1024
	}
	if c.CPUs == 0 {
		c.CPUs = 2
	}
	if c.SerialLog == "" && c.WorkDir != "" {
		c.SerialLog = filepath.Join(c.WorkDir, "serial.log")
	}
	return c
}

// varsPath is the per-VM copy of the OVMF variable store.
func (c Config) varsPath() string { return filepath.Join(c.WorkDir, "vars.fd") }

// Args returns QEMU's command line (without the binary) for c, with the serial
// console and the QMP monitor connecting to the unix sockets serialSock and
// qmpSock. Ports in c.Mgmt must already be resolved (Start picks free ones).
func Args(c Config, serialSock, qmpSock string) ([]string, error) {
	c = c.withDefaults()
	if c.WorkDir == "" {
		return nil, fmt.Errorf("%w: WorkDir is empty: give the VM a directory for its vars and serial log", ErrConfig)
	}
	if c.MemoryMiB < 128 {
		return nil, fmt.Errorf("%w: MemoryMiB %d is too small: use at least 128", ErrConfig, c.MemoryMiB)
	}
	if c.CPUs < 1 {
		return nil, fmt.Errorf("%w: CPUs %d: use at least 1", ErrConfig, c.CPUs)
	}
	a := []string{
		"-nodefaults", "-no-user-config",
		"-accel", "tcg",
		"-machine", "q35",
		"-m", strconv.Itoa(c.MemoryMiB),
		"-smp", strconv.Itoa(c.CPUs),
		"-display", "none",
		"-rtc", "base=utc",
	}
	switch c.Firmware {
	case UEFI:
		a = append(a,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+optEscape(c.OVMFCode),
			"-drive", "if=pflash,format=raw,unit=1,file="+optEscape(c.varsPath()))
	case BIOS:
	default:
		return nil, fmt.Errorf("%w: Firmware %q: use %q or %q", ErrConfig, c.Firmware, UEFI, BIOS)
	}
	a = append(a,
		"-chardev", "socket,id=serial0,server=off,path="+optEscape(serialSock),
		"-serial", "chardev:serial0",
		"-chardev", "socket,id=qmp0,server=off,path="+optEscape(qmpSock),
		"-mon", "chardev=qmp0,mode=control")
	if !c.NoWatchdog {
		a = append(a, "-device", "i6300esb", "-action", "watchdog=reset")
	}
	for i, d := range c.Disks {
		if d.Path == "" {
			return nil, fmt.Errorf("%w: Disks[%d].Path is empty", ErrConfig, i)
		}
		f := d.Format
		if f == "" {
			f = formatFromName(d.Path)
		}
		if f != "qcow2" && f != "raw" {
			return nil, fmt.Errorf("%w: Disks[%d].Format %q: use qcow2 or raw", ErrConfig, i, f)
		}
		// QEMU 7.2 takes a serial only on the device: a drive without one
		// (if=none) and a virtio-blk device for it.
		if len(d.Serial) > 20 {
			return nil, fmt.Errorf("%w: Disks[%d].Serial %q: virtio-blk serials hold at most 20 bytes", ErrConfig, i, d.Serial)
		}
		iface := "virtio"
		if d.Serial != "" {
			iface = fmt.Sprintf("none,id=disk%d", i)
		}
		opt := fmt.Sprintf("file=%s,if=%s,format=%s", optEscape(d.Path), iface, f)
		if d.ReadOnly {
			opt += ",readonly=on"
		}
		if d.Snapshot {
			opt += ",snapshot=on"
		}
		a = append(a, "-drive", opt)
		if d.Serial != "" {
			a = append(a, "-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d,serial=%s", i, optEscape(d.Serial)))
		}
	}
	if c.CDROM != "" {
		a = append(a, "-drive", "file="+optEscape(c.CDROM)+",if=none,id=cd0,media=cdrom,readonly=on,format=raw",
			"-device", "ide-cd,drive=cd0,bus=ide.0,bootindex=0")
	}
	if m := c.Mgmt; m != nil {
		mac := m.MAC
		if mac == "" {
			mac = DefaultMgmtMAC
		}
		if _, err := net.ParseMAC(mac); err != nil {
			return nil, fmt.Errorf("%w: Mgmt.MAC %q: %v", ErrConfig, mac, err)
		}
		nd := "user,id=mgmt"
		if !m.Outbound {
			nd += ",restrict=on"
		}
		for _, f := range []struct {
			host, guest int
		}{{m.HTTPSPort, 443}, {m.HTTPPort, 80}} {
			if f.host == 0 {
				return nil, fmt.Errorf("%w: Mgmt port forward to %d is unresolved (0)", ErrConfig, f.guest)
			}
			if f.host > 0 {
				nd += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", f.host, f.guest)
			}
		}
		// No option ROM: the management NIC is never a boot device, and iPXE
		// on it would only slow down a boot that falls through.
		a = append(a, "-netdev", nd, "-device", "virtio-net-pci,netdev=mgmt,mac="+mac+",romfile=")
		a = appendPcap(a, "mgmt", m.Pcap)
	}
	for i, n := range c.NICs {
		nd, err := n.netdev(fmt.Sprintf("net%d", i))
		if err != nil {
			return nil, fmt.Errorf("%w: NICs[%d]: %v", ErrConfig, i, err)
		}
		a = append(a, "-netdev", nd, "-device", n.device(fmt.Sprintf("net%d", i)))
		a = appendPcap(a, fmt.Sprintf("net%d", i), n.Pcap)
	}
	for i, f := range c.FwCfg {
		if !strings.HasPrefix(f.Name, "opt/") || strings.Contains(f.Name, ",") || f.File == "" {
			return nil, fmt.Errorf("%w: FwCfg[%d] %q (%s): want a name below opt/ without commas and a file", ErrConfig, i, f.Name, f.File)
		}
		a = append(a, "-fw_cfg", "name="+f.Name+",file="+optEscape(f.File))
	}
	if c.Kernel == "" && (c.Initrd != "" || c.Append != "") {
		return nil, fmt.Errorf("%w: Initrd or Append without Kernel: set Kernel for a direct kernel boot", ErrConfig)
	}
	if c.Kernel != "" {
		a = append(a, "-kernel", c.Kernel)
		if c.Initrd != "" {
			a = append(a, "-initrd", c.Initrd)
		}
		if c.Append != "" {
			a = append(a, "-append", c.Append)
		}
	}
	for i, v := range c.VirtFS {
		o, err := v.fsdev(fmt.Sprintf("fs%d", i))
		if err != nil {
			return nil, fmt.Errorf("%w: VirtFS[%d]: %v", ErrConfig, i, err)
		}
		a = append(a, "-fsdev", o, "-device", fmt.Sprintf("virtio-9p-pci,fsdev=fs%d,mount_tag=%s", i, v.Tag))
	}
	if len(c.Consoles) > 0 {
		a = append(a, "-device", "virtio-serial-pci,id=vser0")
		for i, sock := range c.Consoles {
			if sock == "" {
				return nil, fmt.Errorf("%w: Consoles[%d] is empty: give the unix socket path", ErrConfig, i)
			}
			a = append(a, "-chardev", fmt.Sprintf("socket,id=hvc%d,server=off,path=%s", i, optEscape(sock)),
				"-device", fmt.Sprintf("virtconsole,bus=vser0.0,chardev=hvc%d", i))
		}
	}
	if c.RNG {
		a = append(a, "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0")
	}
	if c.NoReboot {
		a = append(a, "-no-reboot")
	}
	if c.NoNIC {
		a = append(a, "-nic", "none")
	}
	a = append(a, c.Extra...)
	return a, nil
}

func (v VirtFS) fsdev(id string) (string, error) {
	if v.Tag == "" || len(v.Tag) > 31 || strings.ContainsAny(v.Tag, ", ") {
		return "", fmt.Errorf("tag %q: want 1-31 bytes without commas or spaces", v.Tag)
	}
	if !filepath.IsAbs(v.Path) {
		return "", fmt.Errorf("path %q: want an absolute host directory", v.Path)
	}
	sm := v.SecurityModel
	if sm == "" {
		sm = "none"
	}
	switch sm {
	case "none", "passthrough", "mapped-xattr", "mapped-file":
	default:
		return "", fmt.Errorf("security model %q: use none, passthrough, mapped-xattr or mapped-file", sm)
	}
	// multidevs=remap keeps inode numbers unique when the export spans
	// several host filesystems (as / does).
	o := fmt.Sprintf("local,id=%s,path=%s,security_model=%s,multidevs=remap", id, optEscape(v.Path), sm)
	if v.ReadOnly {
		o += ",readonly=on"
	}
	return o, nil
}

func (n NIC) netdev(id string) (string, error) {
	if _, err := net.ParseMAC(n.MAC); err != nil {
		return "", fmt.Errorf("MAC %q: %v (every extra NIC needs its own MAC)", n.MAC, err)
	}
	switch n.Kind {
	case Dgram:
		if !validPort(n.LocalPort) || !validPort(n.RemotePort) {
			return "", fmt.Errorf("dgram ports %d and %d: both must be 1-65535", n.LocalPort, n.RemotePort)
		}
		return fmt.Sprintf("dgram,id=%s,local.type=inet,local.host=127.0.0.1,local.port=%d,"+
			"remote.type=inet,remote.host=127.0.0.1,remote.port=%d", id, n.LocalPort, n.RemotePort), nil
	case Mcast:
		host, port, err := net.SplitHostPort(n.Group)
		if err != nil {
			return "", fmt.Errorf("mcast group %q: want group:port, e.g. 230.0.0.1:47010", n.Group)
		}
		ip := net.ParseIP(host)
		p, _ := strconv.Atoi(port)
		if ip == nil || ip.To4() == nil || !ip.IsMulticast() || !validPort(p) {
			return "", fmt.Errorf("mcast group %q: want an IPv4 multicast group and a port, e.g. 230.0.0.1:47010", n.Group)
		}
		return fmt.Sprintf("socket,id=%s,mcast=%s,localaddr=127.0.0.1", id, n.Group), nil
	}
	return "", fmt.Errorf("kind %q: use %q or %q", n.Kind, Dgram, Mcast)
}

func (n NIC) device(id string) string {
	model := n.Model
	if model == "" {
		model = "virtio-net-pci"
	}
	d := fmt.Sprintf("%s,netdev=%s,mac=%s", model, id, n.MAC)
	if n.ROMFile != "" {
		d += ",romfile=" + optEscape(n.ROMFile)
	}
	if n.Boot {
		d += ",bootindex=1"
	}
	return d
}

// appendPcap adds a filter-dump of netdev id's traffic to file, if set.
func appendPcap(a []string, id, file string) []string {
	if file == "" {
		return a
	}
	return append(a, "-object", fmt.Sprintf("filter-dump,id=dump-%s,netdev=%s,file=%s", id, id, optEscape(file)))
}

func validPort(p int) bool { return p > 0 && p < 65536 }

// optEscape escapes commas for QEMU's option syntax (",," is a literal comma).
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func formatFromName(p string) string {
	if strings.HasSuffix(p, ".qcow2") {
		return "qcow2"
	}
	return "raw"
}

// ParseNIC parses the command-line form of an extra NIC:
//
//	dgram:LOCALPORT:REMOTEPORT[,mac=M][,model=X][,romfile=F][,boot]
//	mcast:GROUP:PORT[,mac=M][,model=X][,romfile=F][,boot]
//
// A missing MAC gets 52:54:00:6b:6c:<10+index>.
func ParseNIC(s string, index int) (NIC, error) {
	parts := strings.Split(s, ",")
	kind, addr, ok := strings.Cut(parts[0], ":")
	n := NIC{Kind: NICKind(kind), MAC: fmt.Sprintf("52:54:00:6b:6c:%02x", 0x10+index)}
	if !ok {
		return NIC{}, fmt.Errorf("nic %q: want dgram:LOCALPORT:REMOTEPORT or mcast:GROUP:PORT", s)
	}
	switch n.Kind {
	case Dgram:
		l, r, ok := strings.Cut(addr, ":")
		lp, err1 := strconv.Atoi(l)
		rp, err2 := strconv.Atoi(r)
		if !ok || err1 != nil || err2 != nil {
			return NIC{}, fmt.Errorf("nic %q: want dgram:LOCALPORT:REMOTEPORT, e.g. dgram:47001:47002", s)
		}
		n.LocalPort, n.RemotePort = lp, rp
	case Mcast:
		n.Group = addr
	default:
		return NIC{}, fmt.Errorf("nic %q: kind %q: use dgram or mcast", s, kind)
	}
	for _, o := range parts[1:] {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "mac":
			n.MAC = v
		case "model":
			n.Model = v
		case "romfile":
			n.ROMFile = v
		case "boot":
			n.Boot = true
		default:
			return NIC{}, fmt.Errorf("nic %q: unknown option %q: use mac=, model=, romfile= or boot", s, k)
		}
	}
	if _, err := n.netdev("check"); err != nil {
		return NIC{}, fmt.Errorf("nic %q: %w", s, err)
	}
	return n, nil
}

// L2Pair returns two Dgram NICs, one for each of two VMs, that form a private
// point-to-point L2 segment on free UDP ports of 127.0.0.1.
func L2Pair(macA, macB string) (NIC, NIC, error) {
	pa, err := FreeUDPPort()
	if err != nil {
		return NIC{}, NIC{}, err
	}
	pb, err := FreeUDPPort()
	if err != nil {
		return NIC{}, NIC{}, err
	}
	for pb == pa {
		if pb, err = FreeUDPPort(); err != nil {
			return NIC{}, NIC{}, err
		}
	}
	return NIC{Kind: Dgram, LocalPort: pa, RemotePort: pb, MAC: macA},
		NIC{Kind: Dgram, LocalPort: pb, RemotePort: pa, MAC: macB}, nil
}
