// Package qemu is kiln's one VM launcher: it boots a disk image (or nothing, for
// network boot targets) in qemu-system-x86_64 under TCG with OVMF or SeaBIOS,
// owns the serial console (captured to a file and to memory, with Expect and
// input), speaks QMP for power and status, forwards the management ports over
// user networking and joins extra NICs to private loopback L2 segments.
//
// It also boots a kernel directly (-kernel/-initrd/-append) with host
// directories over virtio-9p and virtio consoles, which qemu/guest uses to
// run Go tests inside a guest with kiln's kernel.
//
// `kiln vm run`, `make run`, the tier-4 boot tests (qemu/boottest) and the boot
// benchmark all start VMs through Start, so what the tests exercise is what an
// operator runs.
//
// Design notes, measured on QEMU 7.2 (Debian 12):
//
//   - The serial port and the QMP monitor are unix-socket chardevs in client
//     mode (server=off): the launcher listens first, QEMU connects while it
//     initialises, before the guest executes one instruction, so no console
//     output is ever lost and nothing polls for a socket to appear.
//   - KVM is never used (/dev/kvm exists on the build machines but hangs);
//     every VM runs with -accel tcg.
//   - Extra NICs for private L2 segments work with all three loopback
//     transports: `-netdev dgram` (new in 7.2, point to point), `-netdev
//     socket,udp=` (point to point) and `-netdev socket,mcast=` with
//     localaddr=127.0.0.1 (any number of VMs; each VM also receives its own
//     frames back). L2Pair builds the dgram pair for two VMs.
//   - QEMU runs in its own process group with a parent-death signal; Close
//     kills the group, so no test leaves a stray qemu behind.
package qemu
