package flash

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	stick := Disk{Name: "sdb", Path: "/dev/sdb", Size: 16 << 30, Transport: "usb", Removable: true}
	with := func(f func(*Disk)) Disk { d := stick; f(&d); return d }
	const img = 1314 << 20
	tests := []struct {
		name string
		disk Disk
		want []error // every reason expected; nil: accepted
		hint string  // part of the message that says what to do
	}{
		{"usb stick", stick, nil, ""},
		{"exactly the image size", with(func(d *Disk) { d.Size = img }), nil, ""},
		{"internal disk not holding the host", with(func(d *Disk) { d.Removable, d.Transport = false, "sata" }), nil, ""},
		{"host root", with(func(d *Disk) { d.HostRoot = []string{"the running system's / is on sdb2"} }), []error{ErrHostDisk}, "boot from something else"},
		{"mounted", with(func(d *Disk) { d.InUse = []string{"sdb1 is mounted on /media/x"} }), []error{ErrInUse}, "unmount"},
		{"swap", with(func(d *Disk) { d.InUse = []string{"sdb2 is in use as swap"} }), []error{ErrInUse}, "swapoff"},
		{"too small", with(func(d *Disk) { d.Size = img - 512 }), []error{ErrTooSmall}, "larger disk"},
		{"read-only", with(func(d *Disk) { d.ReadOnly = true }), []error{ErrReadOnly}, "write-protect"},
		{"partition", with(func(d *Disk) { d.Name, d.Path, d.Partition = "sdb1", "/dev/sdb1", "sdb" }), []error{ErrPartition}, "--device /dev/sdb"},
		{"host root, mounted and small", with(func(d *Disk) {
			d.HostRoot = []string{"/ on sdb2"}
			d.InUse = []string{"sdb1 is mounted on /boot"}
			d.Size = 1 << 30
		}), []error{ErrHostDisk, ErrInUse, ErrTooSmall}, "/boot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.disk, img)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want nil", tt.name, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check(%s) = nil, want %v", tt.name, tt.want)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Check(%s) = %v, want it to wrap %v", tt.name, err, w)
				}
			}
			if !strings.Contains(err.Error(), tt.hint) {
				t.Errorf("Check(%s) = %q, want a hint containing %q", tt.name, err, tt.hint)
			}
		})
	}
}

func TestConfirm(t *testing.T) {
	d := Disk{Name: "sdb", Path: "/dev/sdb", Size: 16 << 30, Transport: "usb", Removable: true, Model: "SanDisk Ultra", Serial: "4C53"}
	tests := []struct {
		typed string
		want  bool
	}{
		{"sdb\n", true},
		{"/dev/sdb\n", true},
		{"  sdb \r\n", true},
		{"sdb", true}, // end of input right after the name
		{"yes\n", false},
		{"y\n", false},
		{"sda\n", false},
		{"\n", false},
		{"", false},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		got, err := Confirm(strings.NewReader(tt.typed), &out, d, "out/kiln.img")
		if err != nil || got != tt.want {
			t.Errorf("Confirm(typed %q) = %v, %v, want %v", tt.typed, got, err, tt.want)
		}
		if !strings.Contains(out.String(), `/dev/sdb  16.0 GiB  usb  "SanDisk Ultra"  serial 4C53  removable`) {
			t.Errorf("Confirm did not show the disk's summary:\n%s", out.String())
		}
		if !tt.want && !strings.Contains(out.String(), "nothing was written") {
			t.Errorf("Confirm(typed %q) did not say it cancelled:\n%s", tt.typed, out.String())
		}
	}
	var out bytes.Buffer
	Confirm(strings.NewReader("vda\n"), &out, Disk{Name: "vda", Path: "/dev/vda", Size: 1 << 30, Transport: "virtio"}, "kiln.img")
	if !strings.Contains(out.String(), "not a removable or USB disk") {
		t.Errorf("Confirm on a fixed disk did not warn:\n%s", out.String())
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1314 << 20: "1.3 GiB", 16 << 30: "16.0 GiB", 2 << 40: "2.0 TiB"} {
		if got := HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
	}
}
