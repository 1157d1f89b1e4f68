// Package isotest boots kiln's live ISO in QEMU (tier 4): as a CD-ROM under
// OVMF and under SeaBIOS, and dd'ed to a disk, each to "kiln: ready" as a live
// system. The ISO is $KILN_ISO, else <repo>/out/kiln.iso (make image).
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
