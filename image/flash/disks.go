// Package flash writes a kiln disk image to a whole disk (a USB stick, an SSD, a
// server's boot disk): it lists candidate disks from sysfs with model, size and
// serial, refuses the disk the host runs from, disks in use (mounted, swap, held by
// device-mapper or RAID), read-only disks and disks smaller than the image, and
// writes with progress, fsync and a read-back SHA-256 check. `kiln flash` and the
// recovery menu's "install to disk" both use it; it depends on the standard
// library, x/sys/unix and init/blockdev only.
package flash

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"kiln.dev/kiln/init/blockdev"
)

// System names what a disk inventory reads; tests point it into a temp dir.
type System struct {
	Block     string // sysfs block class, /sys/class/block
	Dev       string // device nodes, /dev
	MountInfo string // /proc/self/mountinfo
	Swaps     string // /proc/swaps
}

// Host is the running system.
func Host() System {
	return System{Block: "/sys/class/block", Dev: "/dev", MountInfo: "/proc/self/mountinfo", Swaps: "/proc/swaps"}
}

// Disk is a block device as sysfs and the mount table describe it.
type Disk struct {
	Name      string // kernel name: sdb, nvme0n1, loop3
	Path      string // device node
	Size      int64  // bytes
	Model     string // vendor and model as the device reports them
	Serial    string
	Transport string // usb, nvme, sata, scsi, virtio, mmc, loop, or ""
	Removable bool   // the kernel's removable flag (most USB sticks and card readers)
	ReadOnly  bool
	Partition string   // for a partition: its disk's name ("" for a whole disk)
	HostRoot  []string // why the running system depends on it, e.g. "/ is on sda2"
	InUse     []string // what else uses it, e.g. "sdb1 is mounted on /media/x"
}

// Candidate reports whether the disk is one an operator most likely means: a
// removable disk or one on USB or an SD/MMC reader, not holding the host's root.
func (d Disk) Candidate() bool {
	return d.Partition == "" && len(d.HostRoot) == 0 &&
		(d.Removable || d.Transport == "usb" || d.Transport == "mmc")
}

// Summary is one line for listings and the confirmation prompt.
func (d Disk) Summary() string {
	parts := []string{d.Path, HumanSize(d.Size)}
	if d.Transport != "" {
		parts = append(parts, d.Transport)
	}
	if d.Model != "" {
		parts = append(parts, strconv.Quote(d.Model))
	}
	if d.Serial != "" {
		parts = append(parts, "serial "+d.Serial)
	}
	if d.Removable {
		parts = append(parts, "removable")
	}
	return strings.Join(parts, "  ")
}

// HumanSize formats bytes with binary units: "14.9 GiB".
func HumanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// skipped reports kernel names that are never flash targets: RAM disks, zram,
// device-mapper, MD RAID, optical drives.
func skipped(name string) bool {
	for _, p := range []string{"ram", "zram", "dm-", "md", "sr", "nbd"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Disks lists whole disks with a size, sorted by name, with their users filled in.
func (s System) Disks() ([]Disk, error) {
	bd := blockdev.Sys{Block: s.Block, Dev: s.Dev}
	all, err := bd.Disks()
	if err != nil {
		return nil, err
	}
	u, err := s.usage()
	if err != nil {
		return nil, err
	}
	var disks []Disk
	for _, d := range all {
		if skipped(d.Name) {
			continue
		}
		disk := s.describe(d.Name, "", u)
		if disk.Size == 0 {
			continue // empty card reader, unconfigured loop device
		}
		disks = append(disks, disk)
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Name < disks[j].Name })
	return disks, nil
}

// ErrNoDevice marks a --device that is not a block device kiln can see.
var ErrNoDevice = errors.New("no such block device")

// Lookup resolves a device path (/dev/sdb, /dev/disk/by-id/usb-…, or a bare
// kernel name) to the disk or partition it names.
func (s System) Lookup(path string) (Disk, error) {
	name := path
	if strings.Contains(path, "/") {
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			return Disk{}, fmt.Errorf("%s: %w (see kiln flash --list)", path, ErrNoDevice)
		}
		name = filepath.Base(real)
	}
	if _, err := os.Stat(filepath.Join(s.Block, name)); err != nil || name == "" || name == "." {
		return Disk{}, fmt.Errorf("%s: not a block device the kernel lists in %s: %w (see kiln flash --list)", path, s.Block, ErrNoDevice)
	}
	u, err := s.usage()
	if err != nil {
		return Disk{}, err
	}
	parent := ""
	if _, err := os.Stat(filepath.Join(s.Block, name, "partition")); err == nil {
		if parent, err = (blockdev.Sys{Block: s.Block, Dev: s.Dev}).DiskOf(name); err != nil {
			return Disk{}, err
		}
	}
	return s.describe(name, parent, u), nil
}

// describe reads a device's sysfs attributes and applies the usage found.
func (s System) describe(name, parent string, u usage) Disk {
	dir := filepath.Join(s.Block, name)
	d := Disk{Name: name, Path: filepath.Join(s.Dev, name), Partition: parent}
	if n, err := strconv.ParseInt(readAttr(dir, "size"), 10, 64); err == nil {
		d.Size = n * 512 // sysfs counts 512-byte units whatever the sector size
	}
	d.Removable = readAttr(dir, "removable") == "1"
	d.ReadOnly = readAttr(dir, "ro") == "1"
	real, _ := filepath.EvalSymlinks(dir)
	d.Transport = transport(name, real)
	vendor := readAttr(dir, "device/vendor")
	if strings.HasPrefix(vendor, "0x") {
		vendor = "" // a PCI vendor ID (virtio), not a name
	}
	model := strings.Join(strings.Fields(vendor+" "+readAttr(dir, "device/model")), " ")
	if model == "" {
		model = readAttr(dir, "device/name") // MMC/SD
	}
	d.Model = model
	d.Serial = serial(dir, real)
	disk := name
	if parent != "" {
		disk = parent
	}
	d.HostRoot = u.hostRoot[disk]
	d.InUse = u.inUse[disk]
	return d
}

// transport guesses the bus from the device's sysfs path.
func transport(name, real string) string {
	switch {
	case strings.HasPrefix(name, "loop"):
		return "loop"
	case usbAncestor(real) != "":
		return "usb"
	case strings.Contains(real, "/nvme"):
		return "nvme"
	case strings.Contains(real, "/mmc_host/") || strings.HasPrefix(name, "mmcblk"):
		return "mmc"
	case strings.Contains(real, "/virtio"):
		return "virtio"
	case strings.Contains(real, "/ata"):
		return "sata"
	case strings.Contains(real, "/host") && strings.Contains(real, "/target"):
		return "scsi"
	}
	return ""
}

// usbAncestor returns the sysfs directory of the USB device above a block device.
func usbAncestor(real string) string {
	for p := real; p != "/" && p != "." && strings.Contains(p, "/devices/"); p = filepath.Dir(p) {
		if fileExists(filepath.Join(p, "idVendor")) && fileExists(filepath.Join(p, "busnum")) {
			return p
		}
	}
	return ""
}

// serial finds a disk's serial number where its bus puts it.
func serial(dir, real string) string {
	for _, a := range []string{"serial", "device/serial"} { // virtio; NVMe and MMC
		if v := readAttr(dir, a); v != "" {
			return v
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "device", "vpd_pg80")); err == nil && len(b) > 4 {
		if v := strings.TrimSpace(strings.Trim(string(b[4:]), "\x00")); v != "" {
			return v
		}
	}
	if u := usbAncestor(real); u != "" {
		return readAttr(u, "serial")
	}
	return ""
}

func readAttr(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// usage is who uses which whole disk.
type usage struct {
	hostRoot map[string][]string
	inUse    map[string][]string
}

// usage reads the mount table, swaps and holders and attributes each use to the
// whole disks beneath it (through partitions and device-mapper/MD slaves).
func (s System) usage() (usage, error) {
	u := usage{hostRoot: map[string][]string{}, inUse: map[string][]string{}}
	byDev := map[string]string{} // "8:17" → sdb1
	ents, err := os.ReadDir(s.Block)
	if err != nil {
		return u, fmt.Errorf("listing block devices: %w", err)
	}
	for _, e := range ents {
		if dev := readAttr(filepath.Join(s.Block, e.Name()), "dev"); dev != "" {
			byDev[dev] = e.Name()
		}
	}
	mounts, err := readMountInfo(s.MountInfo)
	if err != nil {
		return u, err
	}
	for _, m := range mounts {
		name := byDev[m.dev]
		if name == "" {
			if src, ok := strings.CutPrefix(m.source, "/dev/"); ok && fileExists(filepath.Join(s.Block, filepath.Base(src))) {
				name = filepath.Base(src)
			}
		}
		if name == "" {
			continue // tmpfs, overlay, network filesystems
		}
		if m.root != "/" && m.point != "/" {
			continue // a bind mount of a subtree: the filesystem's own mount says it all
		}
		for _, disk := range s.disksUnder(name, 0) {
			if m.point == "/" {
				u.hostRoot[disk] = appendOnce(u.hostRoot[disk], fmt.Sprintf("the running system's / is on %s", name))
			} else {
				u.inUse[disk] = appendOnce(u.inUse[disk], fmt.Sprintf("%s is mounted on %s", name, m.point))
			}
		}
	}
	swaps, err := readSwaps(s.Swaps)
	if err != nil {
		return u, err
	}
	for _, sw := range swaps {
		name := filepath.Base(sw)
		if !fileExists(filepath.Join(s.Block, name)) {
			continue // a swap file
		}
		for _, disk := range s.disksUnder(name, 0) {
			u.inUse[disk] = appendOnce(u.inUse[disk], fmt.Sprintf("%s is in use as swap", name))
		}
	}
	for _, e := range ents {
		name := e.Name()
		holders, _ := os.ReadDir(filepath.Join(s.Block, name, "holders"))
		for _, h := range holders {
			for _, disk := range s.disksUnder(name, 0) {
				u.inUse[disk] = appendOnce(u.inUse[disk], fmt.Sprintf("%s is held by %s (device-mapper, LVM or RAID)", name, h.Name()))
			}
		}
	}
	return u, nil
}

// disksUnder returns the whole disks a block device lives on.
func (s System) disksUnder(name string, depth int) []string {
	if depth > 8 {
		return nil
	}
	if slaves, err := os.ReadDir(filepath.Join(s.Block, name, "slaves")); err == nil && len(slaves) > 0 {
		var out []string
		for _, sl := range slaves {
			out = append(out, s.disksUnder(sl.Name(), depth+1)...)
		}
		return out
	}
	// A loop device over a block device (the live ISO's root) lives on itself
	// and on that device's disk (one over a file counts only for itself).
	if bf := readAttr(filepath.Join(s.Block, name, "loop"), "backing_file"); bf != "" {
		if dev, ok := strings.CutPrefix(bf, "/dev/"); ok && fileExists(filepath.Join(s.Block, filepath.Base(dev))) {
			return append([]string{name}, s.disksUnder(filepath.Base(dev), depth+1)...)
		}
	}
	if fileExists(filepath.Join(s.Block, name, "partition")) {
		if disk, err := (blockdev.Sys{Block: s.Block, Dev: s.Dev}).DiskOf(name); err == nil {
			return []string{disk}
		}
	}
	return []string{name}
}

func appendOnce(list []string, s string) []string {
	for _, v := range list {
		if v == s {
			return list
		}
	}
	return append(list, s)
}

// mount is one mountinfo line; root is the mounted subtree ("/" unless a bind mount).
type mount struct{ dev, root, point, source string }

// readMountInfo parses /proc/self/mountinfo: "id parent maj:min root point opts
// [optional…] - fstype source superopts".
func readMountInfo(path string) ([]mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	defer f.Close()
	return parseMountInfo(f)
}

func parseMountInfo(r io.Reader) ([]mount, error) {
	var out []mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 7 {
			continue
		}
		m := mount{dev: f[2], root: unescapeMount(f[3]), point: unescapeMount(f[4])}
		for i := 6; i < len(f); i++ {
			if f[i] == "-" && i+2 < len(f) {
				m.source = unescapeMount(f[i+2])
				break
			}
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// readSwaps lists the swap devices of /proc/swaps (a missing file means none).
func readSwaps(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading swaps: %w", err)
	}
	var out []string
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) == 0 {
			continue // header
		}
		out = append(out, unescapeMount(f[0]))
	}
	return out, nil
}
