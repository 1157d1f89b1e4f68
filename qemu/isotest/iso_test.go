// Package isotest boots kiln's live ISO in QEMU (tier 4): as a CD-ROM under
// OVMF and under SeaBIOS, and dd'ed to a disk, each to "kiln: ready" as a live
// system; and installs it to a blank disk from the recovery menu, then boots
// that disk. The ISO is $KILN_ISO, else <repo>/out/kiln.iso (make image).
package isotest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/qemu/boottest"
)

var (
	liveStage1RE = regexp.MustCompile(`kiln-stage1: live root: LIVE/ROOT.SFS at byte \d+ \(\d+ bytes\) on (/dev/\S+)`)
	liveVerityRE = regexp.MustCompile(`kiln-stage1: root /dev/loop\d+ verified by dm-verity as /dev/dm-\d+`)
	liveInitRE   = regexp.MustCompile(`kiln-init: LIVE system \(from the ISO\)`)
)

// isoPath returns the live ISO, skipping t when it is missing.
func isoPath(t *testing.T) string {
	t.Helper()
	boottest.Requirements(t)
	p := os.Getenv("KILN_ISO")
	if p == "" {
		root, err := boottest.RepoRoot()
		if err != nil {
			t.Skipf("tier 4 skipped: %v", err)
		}
		p = filepath.Join(root, "out", "kiln.iso")
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("tier 4 skipped: no live ISO: %v (build it with make image, or set KILN_ISO)", err)
	}
	return p
}

// blankDisk is an empty 2 GiB qcow2: the disk of a machine that boots the ISO.
func blankDisk(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "blank.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", p, "2G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	return p
}

// TestLiveISO boots the ISO three ways; each boot must reach kiln: ready from
// the ISO's root squashfs, mounted through dm-verity, with the live system
// announced.
func TestLiveISO(t *testing.T) {
	iso := isoPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	for _, tc := range []struct {
		name     string
		firmware qemu.Firmware
		cdrom    bool
		device   string // where stage 1 must find the ISO
	}{
		{"cdrom-ovmf", qemu.UEFI, true, "/dev/sr0"},
		{"cdrom-seabios", qemu.BIOS, true, "/dev/sr0"},
		{"disk-seabios", qemu.BIOS, false, "/dev/vda"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := boottest.VMOptions{Firmware: tc.firmware}
			if tc.cdrom {
				o.Disk, o.CDROM = blankDisk(t), iso
			} else {
				o.Disk = boottest.NewOverlay(t, iso, "2G") // the ISO dd'ed to a 2 GiB stick
			}
			start := time.Now()
			vm := boottest.NewVM(t, ctx, iso, o)
			l, err := vm.Expect(ctx, liveStage1RE, boottest.BootTimeout())
			if err != nil {
				t.Fatal(err)
			}
			if m := liveStage1RE.FindStringSubmatch(l); m[1] != tc.device {
				t.Errorf("stage 1 found the ISO on %s, want %s", m[1], tc.device)
			}
			if _, err := vm.Expect(ctx, liveVerityRE, time.Minute); err != nil {
				t.Fatal(err)
			}
			if _, err := vm.Expect(ctx, liveInitRE, time.Minute); err != nil {
				t.Fatal(err)
			}
			ready, err := vm.ExpectLine(ctx, boottest.ReadyRE, boottest.BootTimeout())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: QEMU start to kiln: ready in %.1fs", tc.name, ready.At.Sub(start).Seconds())
		})
	}
}

var (
	installAskRE     = regexp.MustCompile(`disk to install to \(its name, empty to cancel\):`)
	installConfirmRE = regexp.MustCompile(`to confirm, type the disk's name again \(vda\):`)
	installWroteRE   = regexp.MustCompile(`wrote \S+ \S+ to /dev/vda in (\S+), verified in (\S+): sha256 [0-9a-f]{64}`)
	installedRE      = regexp.MustCompile(`kiln is installed on vda`)
	rebootAskRE      = regexp.MustCompile(`reboot now\? \[y/N\]:`)
	slotARE          = regexp.MustCompile(`kiln-stage1: slot a root PARTUUID=`)
)

// TestInstallFromISO boots the ISO from a CD-ROM (SeaBIOS) with a blank
// virtio disk, installs kiln onto it from the recovery menu over the serial
// console, then boots that disk alone (OVMF) to kiln: ready from slot a.
func TestInstallFromISO(t *testing.T) {
	iso := isoPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	disk := blankDisk(t)

	live := boottest.NewVM(t, ctx, iso, boottest.VMOptions{Firmware: qemu.BIOS, Disk: disk, CDROM: iso})
	if _, err := live.ExpectLine(ctx, boottest.ReadyRE, boottest.BootTimeout()); err != nil {
		t.Fatal(err)
	}
	r := boottest.NewRecovery(t, ctx, live)
	r.Menu()
	start := time.Now()
	r.Choose("9")
	for _, step := range []struct {
		re   *regexp.Regexp
		send string
	}{
		{installAskRE, "vda"},
		{installConfirmRE, "vda"},
	} {
		if _, err := live.Expect(ctx, step.re, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := live.SendSerial(step.send + "\r"); err != nil {
			t.Fatal(err)
		}
	}
	l, err := live.Expect(ctx, installWroteRE, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	m := installWroteRE.FindStringSubmatch(l)
	t.Logf("installed in %.1fs from choosing the item (write %s, verify %s)", time.Since(start).Seconds(), m[1], m[2])
	if _, err := live.Expect(ctx, installedRE, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := live.Expect(ctx, rebootAskRE, time.Minute); err != nil {
		t.Fatal(err)
	}
	live.Close() // the CD-ROM would boot first again: start the disk alone instead

	start = time.Now()
	vm := boottest.NewVM(t, ctx, iso, boottest.VMOptions{Firmware: qemu.UEFI, Disk: disk})
	if _, err := vm.Expect(ctx, slotARE, boottest.BootTimeout()); err != nil {
		t.Fatal(err)
	}
	ready, err := vm.ExpectLine(ctx, boottest.ReadyRE, boottest.BootTimeout())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("installed disk (OVMF): QEMU start to kiln: ready in %.1fs", ready.At.Sub(start).Seconds())
}
