package biostest

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/qemu/boottest"
	"kiln.dev/kiln/qemu/otatest"
)

var (
	grubBootRE   = regexp.MustCompile(`kiln-grub: booting generation (\d+) from slot ([ab])`)
	grubTryRE    = regexp.MustCompile(`kiln-grub: trying generation (\d+) in slot ([ab]), tries left (\d+)`)
	trialRE      = regexp.MustCompile(`kiln-ota: trial boot of generation (\d+)`)
	committedRE  = regexp.MustCompile(`kiln-ota: committed generation (\d+)`)
	healthBadRE  = regexp.MustCompile(`kiln-ota: generation 3 \(version bios-c\) failed: health checks did not pass`)
	fellBackRE   = regexp.MustCompile(`kiln-ota: generation 4 \(version bios-d\) did not come up after 2 tries`)
	stage1FailRE = regexp.MustCompile(`kiln-stage1: the appliance cannot start; rebooting`)
)

// TestBIOSLifecycle boots the image under SeaBIOS and walks it through the OTA
// cases GRUB must handle as systemd-boot does:
//
//  1. boot to kiln: ready (the boot time is logged);
//  2. generation 2 (slot b) is installed, GRUB counts its first try, the
//     health checks pass and the entry is blessed (kiln-2.conf);
//  3. generation 3, whose management service fails, fails its health checks,
//     is marked bad and GRUB boots generation 2 again;
//  4. generation 4, whose root does not mount, fails in stage 1 on both of its
//     2 tries (counted by GRUB in grubenv) and GRUB falls back to generation 2,
//     which records the fallback.
func TestBIOSLifecycle(t *testing.T) {
	img := boottest.Image(t)
	otatest.NeedTools(t)
	key := otatest.SigningKey(t, img)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	step := func(name string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), name) }
	boot := boottest.BootTimeout()

	cases, err := otatest.BuildCases(ctx, img, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mk := func(p otatest.Payloads, version string, gen int) []byte {
		b, err := otatest.Bundle(p, version, gen, key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	bundleB, bundleC, bundleD := mk(cases.Good, "bios-b", 2), mk(cases.Broken, "bios-c", 3), mk(cases.Unmountable, "bios-d", 4)
	step("bundles built")

	disk := boottest.NewOverlay(t, img, "")
	var password string
	expect := func(vm *qemu.VM, re *regexp.Regexp, timeout time.Duration) []string {
		t.Helper()
		l, err := vm.Expect(ctx, re, timeout)
		if err != nil {
			t.Fatal(err)
		}
		return re.FindStringSubmatch(l)
	}
	expectSlot := func(vm *qemu.VM, gen, slot string) {
		t.Helper()
		if m := expect(vm, grubBootRE, boot); m[1] != gen || m[2] != slot {
			t.Fatalf("GRUB booted generation %s from slot %s, want generation %s from slot %s", m[1], m[2], gen, slot)
		}
		if m := expect(vm, boottest.Stage1RE, boot); m[1] != slot {
			t.Fatalf("stage 1 runs slot %s, want %s", m[1], slot)
		}
	}
	newVM := func() *qemu.VM {
		vm := boottest.NewVM(t, ctx, img, boottest.VMOptions{Disk: disk, Firmware: qemu.BIOS})
		t.Cleanup(func() { logConsole(t, vm) })
		return vm
	}

	// 1. Boot.
	bootStart := time.Now()
	vm := newVM()
	expectSlot(vm, "1", "a")
	ready, err := vm.ExpectLine(ctx, boottest.ReadyRE, boot)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SeaBIOS boot: QEMU start to kiln: ready in %.1fs", ready.At.Sub(bootStart).Seconds())
	api := otatest.NewAPI(t, vm)
	api.Login(ctx, vm, &password)
	if st := api.Status(ctx); otatest.Slot(st, "a").State != "good" || otatest.Slot(st, "b").State != "empty" {
		t.Fatalf("factory status under BIOS: %+v", st)
	}
	step("booted slot a under SeaBIOS")

	// 2. A good update, committed.
	if res := api.Push(ctx, bundleB, "reboot=1"); res.Code != http.StatusOK || !strings.Contains(res.Body, `"entry": "kiln-2+3-0.conf"`) {
		t.Fatalf("push of generation 2 = %d %s", res.Code, res.Body)
	}
	expect(vm, boottest.RebootRE, time.Minute)
	if m := expect(vm, grubTryRE, boot); m[1] != "2" || m[2] != "b" || m[3] != "2" {
		t.Fatalf("GRUB's try: %q, want generation 2 in slot b with 2 tries left", m[0])
	}
	expectSlot(vm, "2", "b")
	expect(vm, trialRE, boot)
	expect(vm, committedRE, boot) // after kiln: ready: the health checks ask the services
	api = otatest.NewAPI(t, vm)
	api.Login(ctx, vm, &password)
	if b := otatest.Slot(api.Status(ctx), "b"); b.State != "good" || b.Generation != 2 || b.Entry != "kiln-2.conf" || !b.Running {
		t.Fatalf("after the commit under BIOS: %+v", b)
	}
	step("generation 2 committed")

	// 3. Health rollback.
	if res := api.Push(ctx, bundleC, "reboot=1"); res.Code != http.StatusOK {
		t.Fatalf("push of generation 3 = %d %s", res.Code, res.Body)
	}
	expect(vm, boottest.RebootRE, time.Minute)
	expectSlot(vm, "3", "a")
	expect(vm, trialRE, boot)
	expect(vm, healthBadRE, boot)
	expect(vm, boottest.RebootRE, time.Minute)
	expectSlot(vm, "2", "b")
	expect(vm, boottest.ReadyRE, boot)
	api = otatest.NewAPI(t, vm)
	api.Login(ctx, vm, &password)
	if a := otatest.Slot(api.Status(ctx), "a"); a.State != "bad" || a.Generation != 3 || !strings.Contains(a.LastBoot, "health checks") {
		t.Fatalf("after generation 3 failed under BIOS: %+v", a)
	}
	step("generation 3 rolled back after its health checks")

	// 4. Boot-counting fallback.
	if res := api.Push(ctx, bundleD, "reboot=1&tries=2"); res.Code != http.StatusOK || !strings.Contains(res.Body, "kiln-4+2-0.conf") {
		t.Fatalf("push of generation 4 = %d %s", res.Code, res.Body)
	}
	expect(vm, boottest.RebootRE, time.Minute)
	for try := 1; try <= 2; try++ {
		expectSlot(vm, "4", "a")
		expect(vm, stage1FailRE, boot)
		if err := vm.Reset(ctx); err != nil { // the try was counted by GRUB before the kernel
			t.Fatal(err)
		}
	}
	expectSlot(vm, "2", "b")
	expect(vm, fellBackRE, boot)
	expect(vm, boottest.ReadyRE, boot)
	api = otatest.NewAPI(t, vm)
	api.Login(ctx, vm, &password)
	st := api.Status(ctx)
	if a := otatest.Slot(st, "a"); a.State != "bad" || a.Generation != 4 || a.Entry != "kiln-4+0-2.conf" {
		t.Fatalf("after generation 4 fell back under BIOS: %+v", st)
	}
	step("fell back to generation 2 by GRUB's boot counting")
}

// logConsole logs a VM's boot loader, stage-1 and OTA lines.
func logConsole(t *testing.T, vm *qemu.VM) {
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "kiln-grub:") || strings.Contains(l.Text, "kiln-ota:") ||
			stage1FailRE.MatchString(l.Text) || boottest.Stage1RE.MatchString(l.Text) {
			t.Logf("console: %s", strings.TrimSpace(l.Text))
		}
	}
}
