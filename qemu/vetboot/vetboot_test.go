package vetboot

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/qemu/boottest"
)

// liveImage returns the vetting live image's kernel and initrd, skipping t
// when they are not built.
func liveImage(t *testing.T) (kernel, initrd string) {
	t.Helper()
	boottest.Requirements(t)
	img := os.Getenv("KILN_IMAGE")
	if img == "" {
		root, err := boottest.RepoRoot()
		if err != nil {
			t.Skipf("tier 4 skipped: %v", err)
		}
		img = filepath.Join(root, "out", "kiln.qcow2")
	}
	dir := filepath.Join(filepath.Dir(img), "vet")
	kernel, initrd = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	for _, f := range []string{kernel, initrd} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("tier 4 skipped: no vetting live image (%v): build it with `make image`", err)
		}
	}
	return kernel, initrd
}

// startLive boots the live image with a 64 MiB virtio disk, the kernel
// command line and cfg's NICs and extra arguments. The VM is closed when t
// ends; its serial log is kept and named when t failed.
func startLive(t *testing.T, ctx context.Context, cmdline string, cfg qemu.Config) *qemu.VM {
	t.Helper()
	kernel, initrd := liveImage(t)
	work, err := os.MkdirTemp("", "kiln-vetboot-")
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(work, "disk.raw")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	cfg.WorkDir, cfg.Firmware, cfg.MemoryMiB, cfg.NoWatchdog = work, qemu.BIOS, 2048, true
	cfg.Disks = []qemu.Disk{{Path: disk, Format: "raw", Serial: "vetboot-disk"}}
	cfg.Extra = append(cfg.Extra, "-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0,115200 panic=-1 "+cmdline)
	vm, err := qemu.Start(ctx, cfg, qemu.Options{Logger: boottest.TestLogger(t)})
	if err != nil {
		os.RemoveAll(work)
		t.Fatal(err)
	}
	vm.FailOn(boottest.PanicRE)
	t.Cleanup(func() {
		vm.Close()
		if t.Failed() {
			t.Logf("serial console: %s/serial.log", work)
			return
		}
		if testing.Verbose() {
			var b strings.Builder
			for _, l := range vm.Lines() {
				b.WriteString(l.Text + "\n")
			}
			t.Logf("serial console:\n%s", b.String())
		}
		os.RemoveAll(work)
	})
	return vm
}

// expect waits for each pattern in turn and logs the lines with their time
// since start.
func expect(t *testing.T, ctx context.Context, vm *qemu.VM, start time.Time, timeout time.Duration, patterns ...string) []qemu.Line {
	t.Helper()
	var lines []qemu.Line
	for _, p := range patterns {
		l, err := vm.ExpectLine(ctx, regexp.MustCompile(p), timeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%6.1fs %s", l.At.Sub(start).Seconds(), l.Text)
		lines = append(lines, l)
	}
	return lines
}

// poweredOff waits for QEMU to exit after the live image said it powers off.
func poweredOff(t *testing.T, vm *qemu.VM, start time.Time) {
	t.Helper()
	select {
	case <-vm.Exited():
		t.Logf("QEMU exited %.1fs after start: the live image powered the VM off", time.Since(start).Seconds())
	case <-time.After(30 * time.Second):
		t.Fatal("QEMU still runs 30 s after the live image said it powers off")
	}
}

func TestLiveImageBoots(t *testing.T) {
	// Two NICs on segments whose other ends nobody holds: their drivers
	// load and DHCP gets no answer, all on 127.0.0.1.
	virtio, _, err := qemu.L2Pair("52:54:00:6b:6c:61", "52:54:00:6b:6c:62")
	if err != nil {
		t.Fatal(err)
	}
	e1000, _, err := qemu.L2Pair("52:54:00:6b:6c:63", "52:54:00:6b:6c:64")
	if err != nil {
		t.Fatal(err)
	}
	e1000.Model = "e1000"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	vm := startLive(t, ctx, "kiln.mode=vet kiln.server=http://127.0.0.1:1 kiln.token=boot-test kiln.host=vetboot "+
		"kiln.mac=52:54:00:6b:6c:61 kiln.net_wait=5s kiln.hello_timeout=3s kiln.fail_delay=1s",
		qemu.Config{NICs: []qemu.NIC{virtio, e1000}})
	lines := expect(t, ctx, vm, start, time.Minute,
		`Run /init as init process`,
		`kiln-agent: live image up`,
		`kiln-agent: loaded \d+ modules: .*`,
		`kiln-agent: (waiting for a DHCP lease on|no DHCP lease after 5s on) \S+ \S+`,
		`kiln-agent: no DHCP lease after 5s on \S+ \S+`,
		`kiln-agent: cannot reach the appliance at http://127.0.0.1:1`,
		`kiln-agent: reached poweroff`)
	for _, m := range []string{"virtio_pci", "virtio_blk", "virtio_net", "e1000"} {
		if !regexp.MustCompile(`\b` + m + `\b`).MatchString(lines[2].Text) {
			t.Errorf("the live image did not load %s: %s", m, lines[2].Text)
		}
	}
	poweredOff(t, vm, start)
}
