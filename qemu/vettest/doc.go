// Package vettest holds the tier-4 test of hardware vetting end to end: the
// appliance image vets a QEMU machine that network-boots from it.
//
// The appliance boots ($KILN_IMAGE on an overlay) with its management NIC
// on user networking (the API on a forwarded port) and a second NIC on a
// private loopback dgram segment (qemu.L2Pair), with a config through
// fw_cfg that serves a provisioning subnet there. The target is a
// qemu.Target, the machine `kiln vm run --targets` boots: OVMF without an
// option ROM (UEFI PXE → ipxe.efi → the vet script), 2 GiB, two vCPUs, two
// virtio scratch disks and one NIC on the segment.
//
// The test logs in with the `kiln` CLI ($KILN_BIN, else <repo>/out/kiln)
// using the first-boot password from the console, and then, through the API
// with the CLI's token:
//
//  1. registers the target (POST /api/v1/hosts, boot profile vet, the
//     expected spec it meets) and starts a quick run; powers the target on;
//     waits for the run to pass (the wall time from creating the run to
//     "passed" is logged); the target powers itself off; report.json says
//     PASS with two disks, report.html is served and screenshotted with
//     headless Chromium into out/screenshots/vet-report.png;
//  2. raises the expected memory to 64 GiB, starts a run with hold=true and
//     powers the target on again; waits for "holding" with a finding naming
//     memory.installed_bytes; fetches the run's SSH key and known_hosts line
//     (GET …/ssh) and runs Debian's ssh through `kiln vet tunnel` as its
//     ProxyCommand to read the target's /proc/cmdline (kiln.mode=vet); then
//     releases the run and sees the target power off.
//
// Every wait is bounded; on failure the tails of both serial consoles are
// logged and the VMs' work dirs (serial.log) are kept and named. The test
// skips with the reason when the image, the kiln binary, QEMU, OVMF,
// qemu-img, chromium or ssh is missing, and with -short. Budget: one
// appliance boot and two quick runs under TCG; measured on two cores: the
// appliance ready in 25 s, each run 70 s from its creation to passed (or
// holding), the whole test 3m20s.
package vettest
