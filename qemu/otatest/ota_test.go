package otatest

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/ota/bundle"
	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/qemu/boottest"
)

var (
	trialRE      = regexp.MustCompile(`kiln-ota: trial boot of generation (\d+)`)
	committedRE  = regexp.MustCompile(`kiln-ota: committed generation (\d+)`)
	healthBadRE  = regexp.MustCompile(`kiln-ota: generation 3 \(version ota-c\) failed: health checks did not pass`)
	fellBackRE   = regexp.MustCompile(`kiln-ota: generation 4 \(version ota-d\) did not come up after 2 tries`)
	stage1FailRE = regexp.MustCompile(`kiln-stage1: the appliance cannot start; rebooting`)
)

// TestUpdateLifecycle walks one appliance through the OTA cases, sharing
// boots between them (each case's outcome is the next one's starting point):
//
//  1. a tampered bundle and one signed by an unknown key are refused;
//  2. the good bundle (generation 2, slot b) is installed and the appliance
//     reboots into it; QEMU is killed during slot b's first boot → it boots
//     b again, the health checks pass and generation 2 is committed;
//  3. QEMU is killed while generation 3 streams into slot a → the appliance
//     comes up on generation 2 again (committed: no trial), slot a incomplete;
//  4. generation 3, whose default config makes the management service fail,
//     fails its health checks, is marked bad, and the appliance reboots
//     into generation 2 (restoring generation 2's database snapshot);
//  5. generation 4, whose root squashfs does not mount (signed correctly),
//     fails in stage 1 on both of its 2 tries and systemd-boot falls back
//     to generation 2 by boot counting; it is recorded as failed and a
//     second push of it is refused.
func TestUpdateLifecycle(t *testing.T) {
	img := boottest.Image(t)
	NeedTools(t)
	key := SigningKey(t, img)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	step := func(name string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), name) }
	boot := boottest.BootTimeout()

	// Bundles from the image's own payloads.
	cases, err := BuildCases(ctx, img, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	good, broken, unmountable := cases.Good, cases.Broken, cases.Unmountable
	mk := func(p Payloads, version string, gen int) []byte {
		b, err := Bundle(p, version, gen, key)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("bundle %s generation %d: %d bytes, sha256 %s…", version, gen, len(b), sha(b))
		return b
	}
	bundleB, bundleC, bundleD := mk(good, "ota-b", 2), mk(broken, "ota-c", 3), mk(unmountable, "ota-d", 4)
	otherKey, _ := bundle.GenerateKey(nil)
	foreign, err := Bundle(good, "ota-b", 2, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), bundleB...)
	if i := strings.Index(string(tampered[:4096]), `"version": "ota-b"`); i > 0 {
		copy(tampered[i:], `"version": "ota-x"`)
	} else {
		t.Fatal("no version in the bundle's first block")
	}
	step("bundles built")

	disk := boottest.NewOverlay(t, img, "")
	var password string
	expect := func(vm *qemu.VM, re *regexp.Regexp, timeout time.Duration) string {
		t.Helper()
		l, err := vm.Expect(ctx, re, timeout)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	expectSlot := func(vm *qemu.VM, slot string) {
		t.Helper()
		l := expect(vm, boottest.Stage1RE, boot)
		if m := boottest.Stage1RE.FindStringSubmatch(l); m[1] != slot {
			t.Fatalf("booted slot %s, want slot %s: %q", m[1], slot, l)
		}
	}
	up := func(slot string) (*qemu.VM, *API) {
		t.Helper()
		vm := boottest.NewVM(t, ctx, img, boottest.VMOptions{Disk: disk})
		t.Cleanup(func() { logOTA(t, vm) })
		expectSlot(vm, slot)
		expect(vm, boottest.ReadyRE, boot)
		a := NewAPI(t, vm)
		a.Login(ctx, vm, &password)
		return vm, a
	}

	// 1. Refusals on the factory image.
	vm, api := up("a")
	step("booted slot a (generation 1)")
	if st := api.Status(ctx); Slot(st, "a").State != "good" || Slot(st, "a").Generation != 1 || Slot(st, "b").State != "empty" {
		t.Fatalf("factory status: %+v", st)
	}
	for name, b := range map[string][]byte{"tampered": tampered, "unknown key": foreign} {
		res := api.Push(ctx, b, "")
		if res.Code != http.StatusForbidden {
			t.Errorf("push of the %s bundle = %d %s, want 403", name, res.Code, res.Body)
		}
		t.Logf("push of the %s bundle: %d %s", name, res.Code, strings.TrimSpace(res.Body))
	}
	if st := api.Status(ctx); Slot(st, "b").State != "empty" || Slot(st, "a").Entry != "kiln-1.conf" {
		t.Fatalf("a refused bundle changed the slots: %+v", st)
	}
	step("tampered and foreign bundles refused")

	// 2. The good update; power cut during its first boot.
	res := api.Push(ctx, bundleB, "reboot=1")
	if res.Code != http.StatusOK || !strings.Contains(res.Body, `"entry": "kiln-2+3-0.conf"`) {
		t.Fatalf("push of generation 2 = %d %s", res.Code, res.Body)
	}
	step("generation 2 installed")
	expect(vm, boottest.RebootRE, time.Minute)
	expectSlot(vm, "b")
	vm.Quit(ctx)
	vm.Close()
	step("QEMU killed during slot b's first boot")

	bootStart := time.Now()
	vm = boottest.NewVM(t, ctx, img, boottest.VMOptions{Disk: disk})
	trialVM := vm
	t.Cleanup(func() { logOTA(t, trialVM) })
	expectSlot(vm, "b")
	expect(vm, trialRE, boot)
	committed, err := vm.ExpectLine(ctx, committedRE, boot) // the services were ready before
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("downtime: QEMU start (OVMF included) to generation 2 healthy and committed: %.1fs", committed.At.Sub(bootStart).Seconds())
	if !containsLine(vm, boottest.ReadyRE) {
		t.Error("generation 2 was committed before kiln: ready")
	}
	if !containsLine(vm, regexp.MustCompile(`^kiln-b  kiln .*slot b`)) {
		t.Error("slot b's console banner does not show generation 2's host name kiln-b: is its root the new one?")
	}
	api = NewAPI(t, vm)
	api.Login(ctx, vm, &password)
	st := api.Status(ctx)
	if b := Slot(st, "b"); b.State != "good" || b.Generation != 2 || b.Entry != "kiln-2.conf" || b.Version != "ota-b" || !b.Running {
		t.Fatalf("after the commit: %+v", st)
	}
	step("generation 2 committed on its second try")

	// 3. Power cut in the middle of the root stream of generation 3.
	pr, pw := io.Pipe()
	sent := make(chan struct{})
	go func() {
		half := len(bundleC) / 2
		pw.Write(bundleC[:half])
		close(sent)
		pw.Write(bundleC[half:]) // blocks until QEMU is gone
		pw.Close()
	}()
	go api.Do(ctx, "POST", "/api/v1/update/bundle", pr)
	<-sent
	time.Sleep(2 * time.Second) // let the appliance write part of slot a
	vm.Quit(ctx)
	vm.Close()
	pr.CloseWithError(io.ErrClosedPipe)
	step("QEMU killed during the install of generation 3")

	vm, api = up("b")
	if containsLine(vm, trialRE) {
		t.Error("the boot after the commit was a trial again")
	}
	st = api.Status(ctx)
	if a := Slot(st, "a"); a.State != "incomplete" || a.Entry != "" || !Slot(st, "b").Next || Slot(st, "b").State != "good" {
		t.Fatalf("after a power cut during the install: %+v", st)
	}
	step("came up on generation 2 (committed); slot a incomplete")

	// 4. A version whose services fail.
	if res := api.Push(ctx, bundleC, "reboot=1"); res.Code != http.StatusOK {
		t.Fatalf("push of generation 3 = %d %s", res.Code, res.Body)
	}
	expect(vm, boottest.RebootRE, time.Minute)
	expectSlot(vm, "a")
	expect(vm, trialRE, boot)
	expect(vm, healthBadRE, boot)
	step("generation 3 failed its health checks")
	rb, err := vm.ExpectLine(ctx, boottest.RebootRE, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	expectSlot(vm, "b")
	ready, err := vm.ExpectLine(ctx, boottest.ReadyRE, boot)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("downtime: reboot after the failed health checks to generation 2 ready again: %.1fs", ready.At.Sub(rb.At).Seconds())
	api = NewAPI(t, vm)
	api.Login(ctx, vm, &password)
	st = api.Status(ctx)
	if a := Slot(st, "a"); a.State != "bad" || a.Generation != 3 || !strings.Contains(a.LastBoot, "health checks") || !Slot(st, "b").Running {
		t.Fatalf("after generation 3 failed: %+v", st)
	}
	step("back on generation 2")

	// 5. A version whose root does not mount: boot counting falls back.
	if res := api.Push(ctx, bundleD, "reboot=1&tries=2"); res.Code != http.StatusOK || !strings.Contains(res.Body, "kiln-4+2-0.conf") {
		t.Fatalf("push of generation 4 = %d %s", res.Code, res.Body)
	}
	expect(vm, boottest.RebootRE, time.Minute)
	for try := 1; try <= 2; try++ {
		expectSlot(vm, "a")
		expect(vm, stage1FailRE, boot)
		// Stage 1 counts down 60 s before it reboots; reset now instead
		// (the try was counted when systemd-boot picked the entry).
		if err := vm.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		step("generation 4 failed in stage 1")
	}
	expectSlot(vm, "b")
	expect(vm, fellBackRE, boot)
	expect(vm, boottest.ReadyRE, boot)
	api = NewAPI(t, vm)
	api.Login(ctx, vm, &password)
	st = api.Status(ctx)
	failed := map[int]bool{}
	for _, f := range st.Failed {
		failed[f.Generation] = true
	}
	if a := Slot(st, "a"); a.State != "bad" || a.Generation != 4 || !failed[3] || !failed[4] || failed[2] {
		t.Fatalf("after generation 4 fell back: %+v", st)
	}
	if res := api.Push(ctx, bundleD, ""); res.Code != http.StatusConflict || !strings.Contains(res.Body, "failed before") {
		t.Errorf("second push of the failed generation 4 = %d %s, want 409 failed before", res.Code, res.Body)
	}
	if res := api.Push(ctx, bundleB, ""); res.Code != http.StatusConflict {
		t.Errorf("push of the running generation 2 = %d %s, want 409", res.Code, res.Body)
	}
	step("fell back to generation 2 by boot counting")
}

// logOTA logs a VM's OTA console lines (the fault cases' outcomes).
func logOTA(t *testing.T, vm *qemu.VM) {
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "kiln-ota:") || stage1FailRE.MatchString(l.Text) || boottest.Stage1RE.MatchString(l.Text) {
			t.Logf("console: %s", strings.TrimSpace(l.Text))
		}
	}
}

func containsLine(vm *qemu.VM, re *regexp.Regexp) bool {
	for _, l := range vm.Lines() {
		if re.MatchString(l.Text) {
			return true
		}
	}
	return false
}
