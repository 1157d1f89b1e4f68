package boottest

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/qemu"
)

func TestPhases(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	lines := []qemu.Line{
		{At: at(4.5), Text: `BdsDxe: loading Boot0001 "UEFI Misc Device"`},
		{At: at(4.6), Text: `BdsDxe: starting Boot0001 "UEFI Misc Device"`},
		{At: at(7.8), Text: `EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path`},
		// Printed before ttyS0 registered: arrives late, in a burst.
		{At: at(10.1), Text: `[    0.000000] Linux version 6.1.0-56-amd64`},
		{At: at(10.1), Text: `[    2.045294] 00:02: ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a 16550A`},
		{At: at(11.0), Text: `[    3.000000] Run /init as init process`},
		{At: at(11.5), Text: `kiln-stage1: slot a root PARTUUID=BAA25BE4-DBAF-5417-ACD8-5364E547427D`},
		{At: at(12.0), Text: `kiln-init: starting`},
		{At: at(14.0), Text: `kiln: ready`},
	}
	got := Phases(t0, lines, KilnMarkers)
	sec := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	want := []Phase{
		{"firmware (OVMF)", sec(4.6)},
		{"systemd-boot + load kernel/initrd", sec(3.2)},
		{"EFI stub + kernel early (to kernel start)", sec(0.2)}, // kernel start = 11.0 - 3.0
		{"kernel to /init", sec(3.0)},
		{"/init to stage-1 marker", sec(0.5)},
		{"stage 1 (to kiln-init: starting)", sec(0.5)},
		{"PID 1 + services (to kiln: ready)", sec(2.0)},
	}
	approx := cmp.Comparer(func(a, b time.Duration) bool { d := a - b; return d < time.Millisecond && d > -time.Millisecond })
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("Phases() mismatch (-want +got):\n%s", diff)
	}
	// A boot that stopped early yields the phases up to the last marker seen.
	if got := Phases(t0, lines[:3], KilnMarkers); len(got) != 2 {
		t.Errorf("Phases(until EFI stub) = %v, want 2 phases", got)
	}

	var buf bytes.Buffer
	report(&buf, 1, []column{{"kiln", []bootRun{{total: sec(14), phases: got}}}, {"baseline", []bootRun{{total: sec(10)}}}})
	if !strings.Contains(buf.String(), "ratio to baseline: kiln 1.40x (+4.00s)") {
		t.Errorf("report() =\n%s\nwant a 1.40x ratio", buf.String())
	}
}

func TestSlotBEntry(t *testing.T) {
	a := "title kiln dev (slot a)\nsort-key kiln\nversion 00000001\nlinux /kiln/a/vmlinuz\ninitrd /kiln/a/initrd\n" +
		"options root=PARTUUID=aaaa kiln.slot=a ro console=tty0 console=ttyS0,115200 panic=10\n"
	want := "title kiln 2 (slot b)\nsort-key kiln\nversion 00000002\nlinux /kiln/b/vmlinuz\ninitrd /kiln/b/initrd\n" +
		"options root=PARTUUID=bbbb-cc kiln.slot=b ro console=tty0 console=ttyS0,115200 panic=10\n"
	if got := slotBEntry(a, "BBBB-CC"); got != want {
		t.Errorf("slotBEntry() = %q, want %q", got, want)
	}
}
