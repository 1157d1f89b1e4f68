package inventory

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiln.dev/kiln/services/vetting/inventory/smbios/smbiostest"
)

// The fixture tree testdata/server is what Linux 6.1 exposes on a two-socket
// Dell rack server, laid out as captures are: root/ holds the machine's
// files, probe/ the NVMe and ATA answers. It is written by the code below —
// which documents every path — with go test -run TestFixtures
// -update-fixtures, and TestFixtures checks the committed tree still
// matches. testdata/qemu is a real capture of a QEMU q35 machine
// (internal/capture's TestCaptureQEMU) and testdata/host one of the machine
// the tests were written on (TestCapture).

// tree writes a sysfs-like tree.
type tree struct {
	t     *testing.T
	root  string
	files map[string]string // relative path → content, or "->target" for links
}

func newTree(t *testing.T, root string) *tree {
	return &tree{t: t, root: root, files: map[string]string{}}
}

func (tr *tree) file(name, content string) { tr.files[name] = content }

func (tr *tree) link(name, target string) { tr.files[name] = "->" + target }

// attrs writes one-line attributes (a newline is added) below dir.
func (tr *tree) attrs(dir string, kv ...string) {
	for i := 0; i+1 < len(kv); i += 2 {
		tr.file(dir+"/"+kv[i], kv[i+1]+"\n")
	}
}

func (tr *tree) write() {
	for name, content := range tr.files {
		p := filepath.Join(tr.root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tr.t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, p); err != nil {
				tr.t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tr.t.Fatal(err)
		}
	}
}

// up returns the "../" prefix that climbs from dir to the tree root.
func up(dir string) string { return strings.Repeat("../", strings.Count(dir, "/")+1) }

// pciDevice writes a PCI function below parent and its bus/pci link.
func (tr *tree) pciDevice(parent, addr, class, vendor, device, driver string, link ...string) string {
	dir := parent + "/" + addr
	tr.attrs(dir, "class", class, "vendor", vendor, "device", device)
	if driver != "" {
		tr.link(dir+"/driver", up(dir)+"sys/bus/pci/drivers/"+driver)
		tr.file("sys/bus/pci/drivers/"+driver+"/uevent", "DRIVER="+driver+"\n")
	}
	if len(link) == 4 {
		tr.attrs(dir, "current_link_speed", link[0], "current_link_width", link[1],
			"max_link_speed", link[2], "max_link_width", link[3])
	}
	tr.link("sys/bus/pci/devices/"+addr, "../../../"+strings.TrimPrefix(dir, "sys/"))
	return dir
}

// netdev writes a network interface below devdir (a device's directory).
func (tr *tree) netdev(devdir, name, mac, driverLink string, carrier bool, speed string) {
	dir := devdir + "/net/" + name
	state, c := "down", "0"
	if carrier {
		state, c = "up", "1"
	}
	tr.attrs(dir, "address", mac, "operstate", state, "carrier", c, "mtu", "1500", "speed", speed,
		"duplex", map[bool]string{true: "full", false: "unknown"}[carrier])
	tr.link(dir+"/device", "../../../"+filepath.Base(devdir))
	if driverLink != "" && !strings.HasPrefix(driverLink, "pci:") {
		tr.link(devdir+"/driver", up(devdir)+"sys/bus/"+driverLink)
	}
	tr.link("sys/class/net/"+name, "../../"+strings.TrimPrefix(dir, "sys/"))
}

// block writes a whole disk's attributes at dir and its sys/block link.
func (tr *tree) block(dir, name string, sectors int64, rotational bool, removable bool, extra ...string) {
	rot, rem := "0", "0"
	if rotational {
		rot = "1"
	}
	if removable {
		rem = "1"
	}
	tr.attrs(dir, "size", fmt.Sprint(sectors), "removable", rem, "ro", "0",
		"queue/rotational", rot, "queue/logical_block_size", "512", "queue/physical_block_size", "4096")
	tr.attrs(dir, extra...)
	tr.link("sys/block/"+name, "../"+strings.TrimPrefix(dir, "sys/"))
}

// cpus writes proc/cpuinfo and the topology of packages × cores × threads.
func (tr *tree) cpus(model, vendor string, packages, cores, threads int, maxKHz int) {
	var info strings.Builder
	n := packages * cores * threads
	for cpu := 0; cpu < n; cpu++ {
		// Linux numbers the first thread of every core first, package by package.
		pkg := (cpu / cores) % packages
		core := cpu % cores
		fmt.Fprintf(&info, "processor\t: %d\nvendor_id\t: %s\ncpu family\t: 6\nmodel\t\t: 106\nmodel name\t: %s\n"+
			"stepping\t: 6\ncpu MHz\t\t: 2800.000\ncache size\t: 12288 KB\nphysical id\t: %d\nsiblings\t: %d\n"+
			"core id\t\t: %d\ncpu cores\t: %d\napicid\t\t: %d\nflags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr\n\n",
			cpu, vendor, model, pkg, cores*threads, core, cores, cpu*2)
		dir := fmt.Sprintf("sys/devices/system/cpu/cpu%d", cpu)
		tr.attrs(dir, "topology/physical_package_id", fmt.Sprint(pkg), "topology/core_id", fmt.Sprint(core))
		if maxKHz > 0 {
			tr.attrs(dir, "cpufreq/cpuinfo_max_freq", fmt.Sprint(maxKHz))
			tr.attrs(dir, "thermal_throttle/core_throttle_count", "0", "thermal_throttle/package_throttle_count", "0")
		}
	}
	tr.file("proc/cpuinfo", info.String())
	tr.attrs("sys/devices/system/cpu", "online", fmt.Sprintf("0-%d", n-1), "possible", fmt.Sprintf("0-%d", n-1))
}

func meminfo(totalKB, availKB int64) string {
	return fmt.Sprintf("MemTotal:       %d kB\nMemFree:        %d kB\nMemAvailable:   %d kB\nBuffers:          10240 kB\n"+
		"Cached:          204800 kB\nSwapCached:            0 kB\nHugePages_Total:       0\nHugepagesize:       2048 kB\n",
		totalKB, availKB-100000, availKB)
}

// serverTree is a Dell PowerEdge R650: 2 × Xeon Silver 4309Y, 8 × 32 GiB,
// an NVMe and two SATA drives, a USB virtual drive from the iDRAC,
// 2 × 1G (tg3) and 2 × 10G (i40e, trained at x4 in an x8 slot) NICs.
func serverTree(t *testing.T, root, probe string) {
	tr := newTree(t, root)
	table := smbiostest.Server()
	tr.file("sys/firmware/dmi/tables/DMI", string(table))
	tr.file("sys/firmware/dmi/tables/smbios_entry_point", string(smbiostest.EntryPoint3(3, 3, 0, uint32(len(table)))))
	tr.file("proc/sys/kernel/osrelease", "6.1.0-56-amd64\n")
	tr.cpus("Intel(R) Xeon(R) Silver 4309Y CPU @ 2.80GHz", "GenuineIntel", 2, 8, 2, 3600000)
	tr.file("proc/meminfo", meminfo(263518436, 259112044))
	for _, mc := range []string{"mc0", "mc1"} {
		tr.attrs("sys/devices/system/edac/mc/"+mc, "mc_name", "Intel_10nm Socket#"+mc[2:]+" IMC#0", "ce_count", "0", "ue_count", "0")
	}

	// PCI topology.
	pch := "sys/devices/pci0000:00"
	tr.pciDevice(pch, "0000:00:00.0", "0x060000", "0x8086", "0x09a2", "")
	tr.pciDevice(pch, "0000:00:17.0", "0x010601", "0x8086", "0xa182", "ahci")
	tr.pciDevice(pch, "0000:00:14.0", "0x0c0330", "0x8086", "0xa1af", "xhci_hcd")
	rp := tr.pciDevice(pch, "0000:00:1c.0", "0x060400", "0x8086", "0xa190", "pcieport",
		"8.0 GT/s PCIe", "1", "8.0 GT/s PCIe", "1")
	tg3a := tr.pciDevice(rp, "0000:04:00.0", "0x020000", "0x14e4", "0x165f", "tg3", "5.0 GT/s PCIe", "1", "5.0 GT/s PCIe", "1")
	tg3b := tr.pciDevice(rp, "0000:04:00.1", "0x020000", "0x14e4", "0x165f", "tg3", "5.0 GT/s PCIe", "1", "5.0 GT/s PCIe", "1")
	rp2 := tr.pciDevice(pch, "0000:00:1c.5", "0x060400", "0x8086", "0xa195", "pcieport",
		"2.5 GT/s PCIe", "1", "2.5 GT/s PCIe", "1")
	tr.pciDevice(rp2, "0000:03:00.0", "0x030000", "0x102b", "0x0536", "", "2.5 GT/s PCIe", "1", "2.5 GT/s PCIe", "1")
	rp3 := tr.pciDevice("sys/devices/pci0000:30", "0000:30:02.0", "0x060400", "0x8086", "0x347a", "pcieport",
		"8.0 GT/s PCIe", "4", "16.0 GT/s PCIe", "8")
	x710a := tr.pciDevice(rp3, "0000:31:00.0", "0x020000", "0x8086", "0x1572", "i40e", "8.0 GT/s PCIe", "4", "8.0 GT/s PCIe", "8")
	x710b := tr.pciDevice(rp3, "0000:31:00.1", "0x020000", "0x8086", "0x1572", "i40e", "8.0 GT/s PCIe", "4", "8.0 GT/s PCIe", "8")
	rp4 := tr.pciDevice("sys/devices/pci0000:b0", "0000:b0:02.0", "0x060400", "0x8086", "0x347a", "pcieport",
		"16.0 GT/s PCIe", "4", "16.0 GT/s PCIe", "4")
	nvme := tr.pciDevice(rp4, "0000:b1:00.0", "0x010802", "0x8086", "0x0b60", "nvme", "16.0 GT/s PCIe", "4", "16.0 GT/s PCIe", "4")

	// Disks.
	ctrl := nvme + "/nvme/nvme0"
	tr.attrs(ctrl, "model", "Dell Ent NVMe P5600 MU U.2 1.6TB        ", "serial", "PHAB112600U41P6DGN  ",
		"firmware_rev", "1.2.0   ", "state", "live")
	tr.block(ctrl+"/nvme0n1", "nvme0n1", 3125627568, false, false, "wwid", "eui.01000000000000005cd2e4f9b5a15051")
	tr.link(ctrl+"/nvme0n1/device", "../../nvme0")
	tr.file(probe+"/nvme0.nvme-identify", string(nvmeIdentifyBlob(0x8086, "PHAB112600U41P6DGN", "Dell Ent NVMe P5600 MU U.2 1.6TB", "1.2.0", 1600321314816, 128)))
	tr.file(probe+"/nvme0.nvme-smart", string(nvmeSMARTBlob(nvmeHealth{tempK: 309, spare: 100, used: 2, hours: 11234, unsafe: 17})))

	sata := func(port int, name, vendor, sysModel, rev, serial, wwid string, sectors int64, rot bool) {
		dev := fmt.Sprintf("%s/0000:00:17.0/ata%d/host%d/target%d:0:0/%d:0:0:0", pch, port, port-1, port-1, port-1)
		pg80 := "\x00\x80\x00\x14" + fmt.Sprintf("%-20s", serial)
		tr.attrs(dev, "vendor", vendor, "model", sysModel, "rev", rev, "type", "0", "wwid", wwid)
		tr.file(dev+"/vpd_pg80", pg80)
		tr.block(dev+"/block/"+name, name, sectors, rot, false)
		tr.link(dev+"/block/"+name+"/device", "../../../"+filepath.Base(dev))
		tr.link(dev+"/driver", up(dev)+"sys/bus/scsi/drivers/sd")
	}
	sata(1, "sda", "ATA     ", "SAMSUNG MZ7L3480", "JXTC", "S6KHNA0T123456", "naa.5002538f31234567", 937703088, false)
	sata(2, "sdb", "ATA     ", "ST2000NM000A-2J2", "SN03", "ZC1A2B3C", "naa.5000c500d1234567", 3907029168, true)
	tr.file(probe+"/sda.ata-identify", string(ataIdentifyBlob(ataID{serial: "S6KHNA0T123456", fw: "JXTC404Q",
		model: "SAMSUNG MZ7L3480HCHQ-00A07", sectors: 937703088, rpm: 1, wwn: [4]uint16{0x5002, 0x538f, 0x3123, 0x4567}, smart: true})))
	tr.file(probe+"/sda.ata-smart", string(ataSMARTBlob(ataAttr{5, 0}, ataAttr{9, 9876}, ataAttr{194, 0x0028_0016_0021}, ataAttr{197, 0}, ataAttr{198, 0}, ataAttr{199, 0})))
	tr.file(probe+"/sda.ata-smart-status", "passed\n")
	tr.file(probe+"/sdb.ata-identify", string(ataIdentifyBlob(ataID{serial: "ZC1A2B3C", fw: "SN03",
		model: "ST2000NM000A-2J2100", sectors: 3907029168, rpm: 7200, wwn: [4]uint16{0x5000, 0xc500, 0xd123, 0x4567}, smart: true})))
	tr.file(probe+"/sdb.ata-smart", string(ataSMARTBlob(ataAttr{5, 16}, ataAttr{9, 31002}, ataAttr{187, 0}, ataAttr{194, 34}, ataAttr{197, 8}, ataAttr{198, 8})))
	tr.file(probe+"/sdb.ata-smart-status", "passed\n")

	usb := pch + "/0000:00:14.0/usb1/1-1/1-1.3/1-1.3:1.0/host5/target5:0:0/5:0:0:0"
	tr.attrs(usb, "vendor", "iDRAC   ", "model", "LCDRIVE         ", "rev", "0329", "type", "0")
	tr.block(usb+"/block/sdc", "sdc", 2097152, false, true)
	tr.link(usb+"/block/sdc/device", "../../../5:0:0:0")
	tr.attrs("sys/devices/virtual/block/loop0", "size", "0", "removable", "0")
	tr.link("sys/block/loop0", "../devices/virtual/block/loop0")
	sr := pch + "/0000:00:14.0/usb1/1-1/1-1.3/1-1.3:1.1/host6/target6:0:0/6:0:0:0"
	tr.attrs(sr, "vendor", "iDRAC   ", "model", "Virtual CD      ", "type", "5")
	tr.block(sr+"/block/sr0", "sr0", 0, false, true)
	tr.link(sr+"/block/sr0/device", "../../../6:0:0:0")

	// NICs (names as udev would give them on the installed OS; the live
	// image's eth* names change nothing below).
	tr.netdev(tg3a, "eno1", "b0:7b:25:d4:6e:10", "pci:tg3", true, "1000")
	tr.netdev(tg3b, "eno2", "b0:7b:25:d4:6e:11", "pci:tg3", false, "-1")
	tr.netdev(x710a, "ens2f0", "3c:fd:fe:a1:b2:c0", "pci:i40e", true, "10000")
	tr.netdev(x710b, "ens2f1", "3c:fd:fe:a1:b2:c1", "pci:i40e", true, "10000")
	idrac := pch + "/0000:00:14.0/usb1/1-1/1-1.6/1-1.6:1.0"
	tr.netdev(idrac, "idrac", "b0:7b:25:d4:6e:14", "usb/drivers/cdc_ether", true, "-1")
	tr.attrs("sys/devices/virtual/net/lo", "address", "00:00:00:00:00:00", "carrier", "1", "operstate", "unknown", "mtu", "65536")
	tr.link("sys/class/net/lo", "../../devices/virtual/net/lo")
	tr.attrs("sys/devices/virtual/net/bond0", "address", "3c:fd:fe:a1:b2:c0", "carrier", "1", "operstate", "up", "mtu", "9000")
	tr.link("sys/class/net/bond0", "../../devices/virtual/net/bond0")
	tr.write()
}

var generators = map[string]func(t *testing.T, root, probe string){
	"server": serverTree,
}
