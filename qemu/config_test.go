package qemu

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestArgs(t *testing.T) {
	base := []string{
		"-nodefaults", "-no-user-config", "-accel", "tcg", "-machine", "q35",
		"-m", "1024", "-smp", "2", "-display", "none", "-rtc", "base=utc",
	}
	uefi := []string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + DefaultOVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=/w/vars.fd",
	}
	chardevs := []string{
		"-chardev", "socket,id=serial0,server=off,path=/s/serial",
		"-serial", "chardev:serial0",
		"-chardev", "socket,id=qmp0,server=off,path=/s/qmp",
		"-mon", "chardev=qmp0,mode=control",
	}
	wd := []string{"-device", "i6300esb", "-action", "watchdog=reset"}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"minimal", Config{WorkDir: "/w"}, cat(base, uefi, chardevs, wd)},
		{
			"live ISO on a CD-ROM",
			Config{WorkDir: "/w", Firmware: BIOS, Disks: []Disk{{Path: "/d/blank.qcow2"}}, CDROM: "/o/kiln,1.iso"},
			cat(base, chardevs, wd, []string{
				"-drive", "file=/d/blank.qcow2,if=virtio,format=qcow2",
				"-drive", "file=/o/kiln,,1.iso,if=none,id=cd0,media=cdrom,readonly=on,format=raw",
				"-device", "ide-cd,drive=cd0,bus=ide.0,bootindex=0",
			}),
		},
		{
			"appliance",
			Config{
				WorkDir: "/w", MemoryMiB: 2048,
				Disks: []Disk{{Path: "/d/disk,1.qcow2"}},
				Mgmt:  &Mgmt{HTTPSPort: 8443, HTTPPort: 8080},
			},
			cat([]string{"-nodefaults", "-no-user-config", "-accel", "tcg", "-machine", "q35",
				"-m", "2048", "-smp", "2", "-display", "none", "-rtc", "base=utc"}, uefi, chardevs, wd,
				[]string{
					"-drive", "file=/d/disk,,1.qcow2,if=virtio,format=qcow2",
					"-netdev", "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:8443-:443,hostfwd=tcp:127.0.0.1:8080-:80",
					"-device", "virtio-net-pci,netdev=mgmt,mac=" + DefaultMgmtMAC + ",romfile=",
				}),
		},
		{
			"pxe target on BIOS",
			Config{
				WorkDir: "/w", Firmware: BIOS, NoWatchdog: true,
				Disks: []Disk{{Path: "/d/blank.img", Snapshot: true, Serial: "kiln-t1"}},
				NICs: []NIC{{Kind: Dgram, LocalPort: 47001, RemotePort: 47002, MAC: "52:54:00:00:00:02",
					Model: "e1000", ROMFile: "/usr/lib/ipxe/qemu/pxe-e1000.rom", Boot: true}},
			},
			cat(base, chardevs, []string{
				"-drive", "file=/d/blank.img,if=none,id=disk0,format=raw,snapshot=on",
				"-device", "virtio-blk-pci,drive=disk0,serial=kiln-t1",
				"-netdev", "dgram,id=net0,local.type=inet,local.host=127.0.0.1,local.port=47001," +
					"remote.type=inet,remote.host=127.0.0.1,remote.port=47002",
				"-device", "e1000,netdev=net0,mac=52:54:00:00:00:02,romfile=/usr/lib/ipxe/qemu/pxe-e1000.rom,bootindex=1",
			}),
		},
		{
			"mcast segment, outbound mgmt without http",
			Config{
				WorkDir: "/w",
				Mgmt:    &Mgmt{HTTPSPort: 9443, HTTPPort: -1, Outbound: true, MAC: "52:54:00:aa:bb:cc"},
				NICs:    []NIC{{Kind: Mcast, Group: "230.0.0.1:47010", MAC: "52:54:00:00:00:03", Pcap: "/w/net0.pcap"}},
				FwCfg:   []FwCfg{{Name: "opt/kiln/config", File: "/w/a,b.yaml"}},
			},
			cat(base, uefi, chardevs, wd, []string{
				"-netdev", "user,id=mgmt,hostfwd=tcp:127.0.0.1:9443-:443",
				"-device", "virtio-net-pci,netdev=mgmt,mac=52:54:00:aa:bb:cc,romfile=",
				"-netdev", "socket,id=net0,mcast=230.0.0.1:47010,localaddr=127.0.0.1",
				"-device", "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:03",
				"-object", "filter-dump,id=dump-net0,netdev=net0,file=/w/net0.pcap",
				"-fw_cfg", "name=opt/kiln/config,file=/w/a,,b.yaml",
			}),
		},
		{
			"direct kernel boot with 9p, consoles and rng",
			Config{
				WorkDir: "/w", Firmware: BIOS, NoWatchdog: true,
				Kernel: "/k/vmlinux", Initrd: "/k/initrd.cpio", Append: "console=ttyS0 kiln.job=/w/job.json",
				VirtFS: []VirtFS{
					{Tag: "kilnroot", Path: "/", ReadOnly: true},
					{Tag: "share0", Path: "/tmp/a,b", SecurityModel: "passthrough"},
				},
				Consoles: []string{"/s/out"},
				RNG:      true, NoReboot: true, NoNIC: true,
			},
			cat(base, chardevs, []string{
				"-kernel", "/k/vmlinux", "-initrd", "/k/initrd.cpio", "-append", "console=ttyS0 kiln.job=/w/job.json",
				"-fsdev", "local,id=fs0,path=/,security_model=none,multidevs=remap,readonly=on",
				"-device", "virtio-9p-pci,fsdev=fs0,mount_tag=kilnroot",
				"-fsdev", "local,id=fs1,path=/tmp/a,,b,security_model=passthrough,multidevs=remap",
				"-device", "virtio-9p-pci,fsdev=fs1,mount_tag=share0",
				"-device", "virtio-serial-pci,id=vser0",
				"-chardev", "socket,id=hvc0,server=off,path=/s/out",
				"-device", "virtconsole,bus=vser0.0,chardev=hvc0",
				"-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
				"-no-reboot", "-nic", "none",
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Args(tt.cfg, "/s/serial", "/s/qmp")
			if err != nil {
				t.Fatalf("Args() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Args() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestArgsErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error
	}{
		{"no work dir", Config{}, "WorkDir"},
		{"tiny memory", Config{WorkDir: "/w", MemoryMiB: 64}, "MemoryMiB"},
		{"bad firmware", Config{WorkDir: "/w", Firmware: "coreboot"}, "Firmware"},
		{"bad format", Config{WorkDir: "/w", Disks: []Disk{{Path: "x", Format: "vmdk"}}}, "Disks[0].Format"},
		{"fw_cfg name", Config{WorkDir: "/w", FwCfg: []FwCfg{{Name: "kiln/config", File: "/x"}}}, "FwCfg[0]"},
		{"long serial", Config{WorkDir: "/w", Disks: []Disk{{Path: "x", Serial: "123456789012345678901"}}}, "Disks[0].Serial"},
		{"unresolved port", Config{WorkDir: "/w", Mgmt: &Mgmt{}}, "unresolved"},
		{"nic without mac", Config{WorkDir: "/w", NICs: []NIC{{Kind: Dgram, LocalPort: 1, RemotePort: 2}}}, "NICs[0]: MAC"},
		{"unicast group", Config{WorkDir: "/w", NICs: []NIC{{Kind: Mcast, Group: "127.0.0.1:5", MAC: "52:54:00:00:00:01"}}}, "multicast"},
		{"initrd without kernel", Config{WorkDir: "/w", Initrd: "/i"}, "without Kernel"},
		{"virtfs tag", Config{WorkDir: "/w", VirtFS: []VirtFS{{Tag: "a,b", Path: "/x"}}}, "VirtFS[0]: tag"},
		{"virtfs long tag", Config{WorkDir: "/w", VirtFS: []VirtFS{{Tag: strings.Repeat("t", 32), Path: "/x"}}}, "VirtFS[0]: tag"},
		{"virtfs relative", Config{WorkDir: "/w", VirtFS: []VirtFS{{Tag: "t", Path: "x"}}}, "VirtFS[0]: path"},
		{"virtfs model", Config{WorkDir: "/w", VirtFS: []VirtFS{{Tag: "t", Path: "/x", SecurityModel: "root"}}}, "security model"},
		{"empty console", Config{WorkDir: "/w", Consoles: []string{""}}, "Consoles[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Args(tt.cfg, "/s/serial", "/s/qmp")
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Args() error = %v, want ErrConfig mentioning %q", err, tt.want)
			}
		})
	}
}

func TestParseNIC(t *testing.T) {
	tests := []struct {
		in      string
		want    NIC
		wantErr string
	}{
		{in: "dgram:47001:47002", want: NIC{Kind: Dgram, LocalPort: 47001, RemotePort: 47002, MAC: "52:54:00:6b:6c:10"}},
		{in: "mcast:230.0.0.1:47010,mac=52:54:00:00:00:09,model=e1000,boot", want: NIC{Kind: Mcast, Group: "230.0.0.1:47010", MAC: "52:54:00:00:00:09", Model: "e1000", Boot: true}},
		{in: "dgram:1:2,romfile=/r.rom", want: NIC{Kind: Dgram, LocalPort: 1, RemotePort: 2, MAC: "52:54:00:6b:6c:10", ROMFile: "/r.rom"}},
		{in: "tap:foo", wantErr: "use dgram or mcast"},
		{in: "dgram:47001", wantErr: "want dgram:LOCALPORT:REMOTEPORT"},
		{in: "dgram:0:5", wantErr: "1-65535"},
		{in: "mcast:230.0.0.1:47010,speed=10", wantErr: "unknown option"},
		{in: "mcast:10.0.0.1:47010", wantErr: "multicast"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseNIC(tt.in, 0)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseNIC(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseNIC(%q) error = %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseNIC(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestL2Pair(t *testing.T) {
	a, b, err := L2Pair("52:54:00:00:00:0a", "52:54:00:00:00:0b")
	if err != nil {
		t.Fatal(err)
	}
	if a.LocalPort != b.RemotePort || b.LocalPort != a.RemotePort || a.LocalPort == b.LocalPort {
		t.Errorf("L2Pair() = %+v, %+v, want crossed distinct ports", a, b)
	}
}
