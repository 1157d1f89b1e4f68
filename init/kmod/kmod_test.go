package kmod

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

const testDep = `kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/usb/storage/usb-storage.ko: kernel/drivers/usb/core/usbcore.ko kernel/drivers/usb/common/usb-common.ko
kernel/drivers/usb/core/usbcore.ko: kernel/drivers/usb/common/usb-common.ko
kernel/drivers/usb/common/usb-common.ko:
kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko
kernel/fs/fat/fat.ko:
kernel/fs/squashfs/squashfs.ko.xz:
kernel/drivers/input/evdev.ko:
`

const testAlias = `# Aliases extracted from modules themselves.
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000002v* virtio_blk
alias fs-vfat vfat
alias fs-squashfs squashfs
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage
alias usb:v0BC2p3300d*dc*dsc*dp*ic*isc*ip*in* usb_storage
alias input:b*v*p*e*-e*k*r*a*m*l*s*f*w* evdev
alias acpi*:PNP0C0[CD]:* button
`

func testIndex(t *testing.T) *Index {
	t.Helper()
	ix, err := ParseIndex(strings.NewReader(testDep), strings.NewReader(testAlias))
	if err != nil {
		t.Fatalf("ParseIndex: %v", err)
	}
	return ix
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"virtio:d00000002v*", "virtio:d00000002v00001AF4", true},
		{"virtio:d00000002v*", "virtio:d00000001v00001AF4", false},
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", true},
		{"pci:v00008086d00002922sv*sd*bc*sc*i*", "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", false},
		{"usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*", "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00", true},
		{"usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*", "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip62in00", false},
		{"acpi*:PNP0C0[CD]:*", "acpi:PNP0C0C:", true},
		{"acpi*:PNP0C0[CD]:*", "acpi:PNP0C0E:", false},
		{"acpi*:PNP0C0[!CD]:*", "acpi:PNP0C0E:", true},
		{"acpi*:PNP0C0[^CD]:*", "acpi:PNP0C0C:", false},
		{"scsi:t-0x0[0-7]*", "scsi:t-0x05", true},
		{"scsi:t-0x0[0-4]*", "scsi:t-0x05", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*", "", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{"of:N*T*Cvirtio,mmio", "of:NvirtioTvirtio/x,Cvirtio,mmio", true},
		{"x[", "x[", true},
		{"[]]", "]", true},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"|"+tt.s, func(t *testing.T) {
			if got := Match(tt.pattern, tt.s); got != tt.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
			}
		})
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/usb/storage/usb-storage.ko": "usb_storage",
		"kernel/fs/squashfs/squashfs.ko.xz":         "squashfs",
		"virtio_blk.ko":                             "virtio_blk",
		"kernel/x/nls_cp437.ko.zst":                 "nls_cp437",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResolve(t *testing.T) {
	ix := testIndex(t)
	tests := []struct {
		name string
		want []string
	}{
		{"virtio_blk", []string{"virtio_blk"}},
		{"usb-storage", []string{"usb_storage"}},
		{"fs-vfat", []string{"vfat"}},
		{"virtio:d00000002v00001AF4", []string{"virtio_blk"}},
		{"usb:v0BC2p3300d0100dc00dsc00dp00ic08isc06ip50in00", []string{"usb_storage"}},
		{"input:b0019v0000p0001e0000-e0,1,k74,ramlsfw", []string{"evdev"}},
		{"acpi:LNXPWRBN:", nil},
		{"acpi:PNP0C0C:", []string{"button"}},
		{"nothing-here", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ix.Resolve(tt.name)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Resolve(%q) mismatch (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

func TestLoadOrder(t *testing.T) {
	ix := testIndex(t)
	tests := []struct {
		module string
		want   []string
	}{
		{"virtio_pci", []string{"virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_ring", "virtio", "virtio_pci"}},
		{"usb-storage", []string{"usb_common", "usbcore", "usb_storage"}},
		{"vfat", []string{"fat", "vfat"}},
		{"squashfs", []string{"squashfs"}},
	}
	for _, tt := range tests {
		t.Run(tt.module, func(t *testing.T) {
			got, err := ix.LoadOrder(tt.module)
			if err != nil {
				t.Fatalf("LoadOrder(%q): %v", tt.module, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("LoadOrder(%q) mismatch (-want +got):\n%s", tt.module, diff)
			}
		})
	}
	if _, err := ix.LoadOrder("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LoadOrder(nope) error = %v, want ErrNotFound", err)
	}
}

func TestLoadOrderCycleAndMissingDep(t *testing.T) {
	ix, err := ParseIndex(strings.NewReader("a.ko: b.ko\nb.ko: a.ko\nc.ko: missing.ko\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.LoadOrder("a"); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("LoadOrder(a) error = %v, want a cycle error", err)
	}
	if _, err := ix.LoadOrder("c"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "needed by c") {
		t.Errorf("LoadOrder(c) error = %v, want missing dependency named", err)
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := ParseIndex(strings.NewReader("no colon here\n"), nil); err == nil {
		t.Error("ParseIndex(bad dep) = nil error, want one")
	}
	if _, err := ParseIndex(strings.NewReader(""), strings.NewReader("alias only-two\n")); err == nil {
		t.Error("ParseIndex(bad alias) = nil error, want one")
	}
}

// fakeKernel records insertions and marks modules live in a fake /sys/module.
type fakeKernel struct {
	sys      string
	inserted []string
	fail     map[string]error
}

func (k *fakeKernel) insert(file, params string) error {
	m := ModuleName(file)
	if err := k.fail[m]; err != nil {
		return err
	}
	k.inserted = append(k.inserted, m+"("+params+")")
	if err := os.MkdirAll(filepath.Join(k.sys, m), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(k.sys, m, "initstate"), []byte("live\n"), 0o644)
}

func newTestLoader(t *testing.T) (*Loader, *fakeKernel) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{"modules.dep": testDep, "modules.alias": testAlias, "modules.builtin": "kernel/drivers/block/loop.ko\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k := &fakeKernel{sys: t.TempDir(), fail: map[string]error{}}
	l, err := NewLoader(Options{Dir: dir, SysModule: k.sys, Insert: k.insert})
	if err != nil {
		t.Fatalf("NewLoader: %v", err)
	}
	return l, k
}

func TestLoader(t *testing.T) {
	l, k := newTestLoader(t)
	// virtio is already in the kernel: it must not be inserted again.
	if err := os.MkdirAll(filepath.Join(k.sys, "virtio"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := l.Load("virtio_blk", "queue_depth=8"); err != nil {
		t.Fatalf("Load(virtio_blk): %v", err)
	}
	if err := l.Load("fs-vfat", ""); err != nil {
		t.Fatalf("Load(fs-vfat): %v", err)
	}
	if err := l.Load("vfat", ""); err != nil { // second time: nothing to do
		t.Fatalf("Load(vfat) again: %v", err)
	}
	if err := l.Load("loop", ""); err != nil { // built in
		t.Fatalf("Load(loop): %v", err)
	}
	want := []string{"virtio_ring()", "virtio_blk(queue_depth=8)", "fat()", "vfat()"}
	if diff := cmp.Diff(want, k.inserted); diff != "" {
		t.Errorf("inserted mismatch (-want +got):\n%s", diff)
	}
	if err := l.Load("crc32c", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load(crc32c) = %v, want ErrNotFound", err)
	}
}

func TestLoadAliasAlreadyExistsAndFailures(t *testing.T) {
	l, k := newTestLoader(t)
	k.fail["usbcore"] = unix.ENODEV
	got, err := l.LoadAlias("usb:v0BC2p3300d0100dc00dsc00dp00ic08isc06ip50in00")
	if err == nil || len(got) != 0 {
		t.Fatalf("LoadAlias(usb) = %v, %v; want a failure", got, err)
	}
	// A failed module is not retried by coldplug.
	k.fail["usbcore"] = nil
	if got, err := l.LoadAlias("usb:v0BC2p3300d0100dc00dsc00dp00ic08isc06ip50in00"); err != nil || len(got) != 0 {
		t.Errorf("LoadAlias(usb) again = %v, %v; want nothing tried", got, err)
	}
	// EEXIST (raced with another modprobe) counts as loaded.
	k.fail["evdev"] = unix.EEXIST
	if _, err := l.LoadAlias("input:b0019v0000p0001e0000-e0,1,k74,ramlsfw"); err != nil {
		t.Errorf("LoadAlias(input) = %v, want EEXIST ignored", err)
	}
	if got, err := l.LoadAlias("unknown:thing"); err != nil || len(got) != 0 {
		t.Errorf("LoadAlias(unknown) = %v, %v; want nothing", got, err)
	}
}

func FuzzMatch(f *testing.F) {
	f.Add("acpi*:PNP0C0[CD]:*", "acpi:PNP0C0C:")
	f.Add(`a\*[!x-z]?`, "a*b1")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if Match(pattern, s) && !strings.ContainsAny(pattern, `*?[\`) && pattern != s {
			t.Errorf("Match(%q, %q) = true for a literal pattern", pattern, s)
		}
	})
}

func FuzzParseIndex(f *testing.F) {
	f.Add(testDep, testAlias)
	f.Fuzz(func(t *testing.T, dep, alias string) {
		ix, err := ParseIndex(strings.NewReader(dep), strings.NewReader(alias))
		if err != nil {
			return
		}
		for _, m := range ix.Modules() {
			ix.LoadOrder(m) // must terminate (cycles are errors)
		}
	})
}
