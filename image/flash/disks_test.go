package flash

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeHost lays out sysfs, /dev, mountinfo and swaps like a laptop running from
// its NVMe disk (nvme0n1p2 under LUKS as dm-0 is /, nvme0n1p1 is /boot/efi) with a
// SATA disk (sda, sda1 mounted on /srv), a USB stick (sdb, the flash target), an SD
// card (mmcblk0, a swap partition), an empty card reader, an unused loop device
// and zram.
func fakeHost(t *testing.T) System {
	t.Helper()
	dir := t.TempDir()
	s := System{
		Block: filepath.Join(dir, "sys/class/block"), Dev: filepath.Join(dir, "dev"),
		MountInfo: filepath.Join(dir, "mountinfo"), Swaps: filepath.Join(dir, "swaps"),
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, v string) {
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte(v+"\n"), 0o644))
	}
	must(os.MkdirAll(s.Block, 0o755))
	must(os.MkdirAll(s.Dev, 0o755))
	devices := filepath.Join(dir, "sys/devices")
	// disk adds a block device at sysfs path rel with attributes.
	disk := func(rel, name, dev string, attrs map[string]string) string {
		p := filepath.Join(devices, rel, name)
		write(filepath.Join(p, "dev"), dev)
		for k, v := range attrs {
			write(filepath.Join(p, k), v)
		}
		must(os.Symlink(p, filepath.Join(s.Block, name)))
		write(filepath.Join(s.Dev, name), "")
		return p
	}
	part := func(diskPath, name, dev, index string) string {
		p := filepath.Join(diskPath, name)
		write(filepath.Join(p, "dev"), dev)
		write(filepath.Join(p, "partition"), index)
		write(filepath.Join(p, "size"), "2048")
		must(os.MkdirAll(filepath.Join(p, "holders"), 0o755))
		must(os.Symlink(p, filepath.Join(s.Block, name)))
		write(filepath.Join(s.Dev, name), "")
		return p
	}
	nvme := disk("pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0", "nvme0n1", "259:0", map[string]string{
		"size": "1000215216", "removable": "0", "ro": "0", "device/model": "Samsung SSD 980 PRO 500GB", "device/serial": "S5GXNF0R123456",
	})
	part(nvme, "nvme0n1p1", "259:1", "1")
	p2 := part(nvme, "nvme0n1p2", "259:2", "2")
	dm := disk("virtual/block", "dm-0", "254:0", map[string]string{"size": "999000000"})
	must(os.MkdirAll(filepath.Join(dm, "slaves"), 0o755))
	must(os.Symlink(p2, filepath.Join(dm, "slaves", "nvme0n1p2")))
	must(os.MkdirAll(filepath.Join(p2, "holders"), 0o755))
	must(os.Symlink(dm, filepath.Join(p2, "holders", "dm-0")))

	sda := disk("pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block", "sda", "8:0", map[string]string{
		"size": "3907029168", "removable": "0", "ro": "0", "device/vendor": "ATA", "device/model": "WDC WD20EFRX-68E",
	})
	must(os.WriteFile(filepath.Join(sda, "device/vpd_pg80"), append([]byte{0, 0x80, 0, 12}, "WD-WCC4M1234"...), 0o644))
	part(sda, "sda1", "8:1", "1")

	usb := filepath.Join(devices, "pci0000:00/0000:00:14.0/usb2/2-1")
	write(filepath.Join(usb, "idVendor"), "0781")
	write(filepath.Join(usb, "busnum"), "2")
	write(filepath.Join(usb, "serial"), "4C530001231120115142")
	sdb := disk("pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block", "sdb", "8:16", map[string]string{
		"size": "30031872", "removable": "1", "ro": "0", "device/vendor": "SanDisk", "device/model": "Ultra",
	})
	part(sdb, "sdb1", "8:17", "1")

	mmc := disk("platform/mmc_host/mmc0/mmc0:aaaa/block", "mmcblk0", "179:0", map[string]string{
		"size": "62333952", "removable": "0", "ro": "0", "device/name": "SC64G", "device/serial": "0x1234abcd",
	})
	part(mmc, "mmcblk0p1", "179:1", "1")
	part(mmc, "mmcblk0p2", "179:2", "2")

	disk("pci0000:00/0000:00:14.0/usb2/2-2/2-2:1.0/host7/target7:0:0/7:0:0:0/block", "sdc", "8:32", map[string]string{"size": "0", "removable": "1"})
	disk("virtual/block", "loop0", "7:0", map[string]string{"size": "0"})
	disk("virtual/block", "zram0", "252:0", map[string]string{"size": "16777216"})

	write(s.MountInfo, strings.Join([]string{
		`22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/mapper/root rw`,
		`23 22 259:1 / /boot/efi rw,relatime shared:2 - vfat /dev/nvme0n1p1 rw`,
		`24 22 0:21 / /proc rw,nosuid shared:3 - proc proc rw`,
		`25 22 8:1 / /srv/my\040data rw,relatime shared:4 - ext4 /dev/sda1 rw`,
		`26 22 0:45 / /run rw shared:5 - tmpfs tmpfs rw`,
	}, "\n"))
	write(s.Swaps, "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/mmcblk0p2                          partition\t8388604\t\t0\t\t-2\n/swapfile file 1024 0 -3")
	return s
}

func TestDisks(t *testing.T) {
	s := fakeHost(t)
	got, err := s.Disks()
	if err != nil {
		t.Fatal(err)
	}
	dev := func(n string) string { return filepath.Join(s.Dev, n) }
	want := []Disk{
		{Name: "mmcblk0", Path: dev("mmcblk0"), Size: 62333952 * 512, Model: "SC64G", Serial: "0x1234abcd", Transport: "mmc",
			InUse: []string{"mmcblk0p2 is in use as swap"}},
		{Name: "nvme0n1", Path: dev("nvme0n1"), Size: 1000215216 * 512, Model: "Samsung SSD 980 PRO 500GB", Serial: "S5GXNF0R123456", Transport: "nvme",
			HostRoot: []string{"the running system's / is on dm-0"},
			InUse:    []string{"nvme0n1p1 is mounted on /boot/efi", "nvme0n1p2 is held by dm-0 (device-mapper, LVM or RAID)"}},
		{Name: "sda", Path: dev("sda"), Size: 3907029168 * 512, Model: "ATA WDC WD20EFRX-68E", Serial: "WD-WCC4M1234", Transport: "sata",
			InUse: []string{"sda1 is mounted on /srv/my data"}},
		{Name: "sdb", Path: dev("sdb"), Size: 30031872 * 512, Model: "SanDisk Ultra", Serial: "4C530001231120115142", Transport: "usb", Removable: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Disks() mismatch (-want +got):\n%s", diff)
	}
	var cands []string
	for _, d := range got {
		if d.Candidate() {
			cands = append(cands, d.Name)
		}
	}
	if strings.Join(cands, " ") != "mmcblk0 sdb" {
		t.Errorf("candidates = %v, want [mmcblk0 sdb]", cands)
	}
}

func TestLookup(t *testing.T) {
	s := fakeHost(t)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	byID := filepath.Join(s.Dev, "disk/by-id")
	must(os.MkdirAll(byID, 0o755))
	must(os.Symlink("../../sdb", filepath.Join(byID, "usb-SanDisk_Ultra_4C53-0:0")))
	const img = 1314 << 20
	tests := []struct {
		device  string
		name    string
		refused error // nil: Check accepts it for the image
	}{
		{filepath.Join(s.Dev, "sdb"), "sdb", nil},
		{filepath.Join(byID, "usb-SanDisk_Ultra_4C53-0:0"), "sdb", nil},
		{"sdb", "sdb", nil},
		{filepath.Join(s.Dev, "sdb1"), "sdb1", ErrPartition},
		{filepath.Join(s.Dev, "nvme0n1"), "nvme0n1", ErrHostDisk},
		{filepath.Join(s.Dev, "sda"), "sda", ErrInUse},
		{filepath.Join(s.Dev, "mmcblk0"), "mmcblk0", ErrInUse},
		{filepath.Join(s.Dev, "sdc"), "sdc", ErrTooSmall}, // empty card reader
	}
	for _, tt := range tests {
		d, err := s.Lookup(tt.device)
		if err != nil {
			t.Errorf("Lookup(%s) = %v", tt.device, err)
			continue
		}
		if d.Name != tt.name {
			t.Errorf("Lookup(%s).Name = %s, want %s", tt.device, d.Name, tt.name)
		}
		err = Check(d, img)
		if (tt.refused == nil) != (err == nil) || (tt.refused != nil && !errors.Is(err, tt.refused)) {
			t.Errorf("Check(Lookup(%s)) = %v, want %v", tt.device, err, tt.refused)
		}
	}
	for _, bad := range []string{filepath.Join(s.Dev, "sdz"), "sdz", filepath.Join(t.TempDir(), "file")} {
		if _, err := s.Lookup(bad); !errors.Is(err, ErrNoDevice) {
			t.Errorf("Lookup(%s) = %v, want ErrNoDevice", bad, err)
		}
	}
}

func TestParseMountInfo(t *testing.T) {
	in := "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n" +
		"37 36 8:17 / /media/a\\040b rw - vfat /dev/sdb1 rw\nshort line\n"
	got, err := parseMountInfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []mount{{dev: "98:0", root: "/mnt1", point: "/mnt2", source: "/dev/root"}, {dev: "8:17", root: "/", point: "/media/a b", source: "/dev/sdb1"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(mount{})); diff != "" {
		t.Errorf("parseMountInfo mismatch (-want +got):\n%s", diff)
	}
}

func FuzzParseMountInfo(f *testing.F) {
	f.Add("22 1 254:0 / / rw shared:1 - ext4 /dev/mapper/root rw\n")
	f.Add(`1 2 3:4 / /a\04 - x \`)
	f.Fuzz(func(t *testing.T, s string) {
		parseMountInfo(strings.NewReader(s))
	})
}

// TestDisksLiveSystem: booted from the live ISO dd'ed to vda, / is dm-verity
// (dm-0) over a loop device over vda itself, so vda holds the running system
// though nothing on it is mounted; vdb is the blank disk to install to.
func TestDisksLiveSystem(t *testing.T) {
	dir := t.TempDir()
	s := System{
		Block: filepath.Join(dir, "sys/class/block"), Dev: filepath.Join(dir, "dev"),
		MountInfo: filepath.Join(dir, "mountinfo"), Swaps: filepath.Join(dir, "swaps"),
	}
	write := func(p, v string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	disk := func(rel, name, dev string, attrs map[string]string) string {
		p := filepath.Join(dir, "sys/devices", rel, name)
		write(filepath.Join(p, "dev"), dev)
		for k, v := range attrs {
			write(filepath.Join(p, k), v)
		}
		if err := os.MkdirAll(s.Block, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(s.Block, name)); err != nil {
			t.Fatal(err)
		}
		write(filepath.Join(s.Dev, name), "")
		return p
	}
	disk("pci0000:00/0000:00:03.0/virtio1/block", "vda", "253:0", map[string]string{"size": "4194304"})
	disk("pci0000:00/0000:00:04.0/virtio2/block", "vdb", "253:16", map[string]string{"size": "8388608"})
	loop := disk("virtual/block", "loop0", "7:0", map[string]string{"size": "75000", "loop/backing_file": "/dev/vda"})
	dm := disk("virtual/block", "dm-0", "254:0", map[string]string{"size": "74400"})
	if err := os.MkdirAll(filepath.Join(dm, "slaves"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(loop, filepath.Join(dm, "slaves", "loop0")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(loop, "holders"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dm, filepath.Join(loop, "holders", "dm-0")); err != nil {
		t.Fatal(err)
	}
	write(s.MountInfo, `1 1 254:0 / / ro,relatime shared:1 - squashfs /dev/dm-0 ro`)
	write(s.Swaps, "Filename\tType\tSize\tUsed\tPriority")

	got, err := s.Disks()
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]string{}
	for _, d := range got {
		refused[d.Name] = strings.Join(append(d.HostRoot, d.InUse...), "; ")
	}
	want := map[string]string{
		"loop0": "the running system's / is on dm-0; loop0 is held by dm-0 (device-mapper, LVM or RAID)",
		"vda":   "the running system's / is on dm-0; loop0 is held by dm-0 (device-mapper, LVM or RAID)",
		"vdb":   "",
	}
	if diff := cmp.Diff(want, refused); diff != "" {
		t.Errorf("Disks() uses mismatch (-want +got):\n%s", diff)
	}
}
