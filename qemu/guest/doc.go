// Package guest runs Go tests inside a QEMU guest that boots kiln's own
// kernel (Debian's linux-image pinned in image/packages.lock) with the host's
// userland, so tests of kernel services — nfsd, LIO over configfs, the NFS and
// iSCSI clients, network namespaces — run against the real kernel with real
// clients on any host that has QEMU, whatever its own kernel (tier "3g").
//
// API:
//
//	type Options struct {
//		Modules   []string      // loaded, with their dependency closure, before the test runs
//		MemoryMiB int           // default 1024
//		CPUs      int           // default 2
//		Timeout   time.Duration // bound on the whole guest run, default 10m
//		Shared    []string      // host dirs mounted read-write at the same path inside
//		Disks     []string      // extra disk image files attached as virtio-blk
//		Env       []string      // extra environment for the test process inside
//	}
//	func Enter(t *testing.T, o Options) bool  // host: run t inside a guest, report, return false; guest: true
//	func EnterB(b *testing.B, o Options) bool // the same for benchmarks
//	func Inside() bool                        // whether this process runs inside a guest
//
// Usage:
//
//	func TestExport(t *testing.T) {
//		dir := t.TempDir() // on the host; inside, $KILN_GUEST_SHARED names it
//		if !guest.Enter(t, guest.Options{Modules: []string{"nfsd"}, Shared: []string{dir}}) {
//			return // the host side: the guest ran the test body below and reported
//		}
//		// real kernel here, as root
//	}
//
// How a run works. On the host, Enter prepares, once and cached under
// out/cache/guest/ at the repository root: the kernel store — the bzImage,
// the PVH-bootable vmlinux cut out of it (no decompression under TCG: ~5 s
// saved per boot), the kernel's whole module tree with modules.dep/alias/
// softdep from kiln's Go depmod (image/kmod) and kmod's binary indexes from
// the host's depmod, and an index of every module's .modinfo, unpacked from
// the pinned .deb ($KILN_KERNEL_DEB, else out/cache/debs, fetched from
// Debian's archive when missing); the guest init (a static Go program,
// internal/guestinit, CGO_ENABLED=0); and a 4 MB uncompressed newc initramfs
// holding /init and the few modules that reach the root. A warm start reads
// neither the .deb nor its hash. It then boots QEMU directly into that kernel
// (SeaBIOS, -kernel/-initrd, -accel tcg, -nic none, -no-reboot, panic=-1)
// with the host's / exported read-only over virtio-9p and each Shared
// directory read-write. The job (the test binary, -test.run anchored to the
// test's name, -test.v, environment, working directory, modules) is a JSON
// file in the test's temp dir, named on the kernel command line and read by
// the guest through the 9p root.
//
// Inside, PID 1 loads the initramfs modules with kiln's loader (init/kmod),
// mounts the 9p root (msize 512 KiB, cache=loose) as the lower layer of an
// overlay whose upper layer is a tmpfs — every path is writable and no write
// reaches the host — and mounts fresh proc, sysfs, devtmpfs, devpts,
// /dev/shm, /run and /tmp (tmpfs: nfsd can export it, not the overlay; the
// test binary's and the package's directories stay visible in it), configfs
// at /sys/kernel/config and cgroup2. The
// store's module tree is bound at /lib/modules/<release>, so every module of
// the kernel loads on demand. Options.Modules and the kernel's request_module
// go through the host's kmod modprobe: measured under TCG, a lookup with its
// binary indexes takes 0.13 s where kiln's Go modprobe, parsing the text
// index of all 4900 modules, takes 0.37 s, and kmod also honours softdeps;
// iscsid's libkmod needs the binary indexes anyway. While the test runs,
// PID 1 follows the kernel's uevents and loads the modules of new devices
// (init/coldplug, as udev would: an iSCSI login's disk needs sd_mod); there
// is no udev otherwise, so no /dev/disk/by-* links. With nfsd among the
// modules, PID 1 mounts the nfsd file system at /proc/fs/nfsd, as Debian's
// proc-fs-nfsd.mount does. lo is up, nothing else is configured: tests make
// their own namespaces and veth pairs. The test runs as root with cwd = the
// package directory (the same path as on the host) and env KILN_GUEST=1,
// KILN_GUEST_SHARED, PATH, the host's KILN_* variables and Options.Env.
//
// Its stdout and stderr go to the first virtio console (/dev/hvc0, raw), which
// the host streams to t.Log ("guest: …"); the kernel's messages and PID 1's
// own stay on the serial console ("console: …"). When the test ends PID 1
// writes "kiln-guest <nonce> exit <status>" on a line of its own, kills what
// is left, unmounts the shares and powers off. The host fails the test on a
// non-zero status, on a guest that ends without the marker, and on Timeout,
// after which it kills QEMU; QEMU also dies with the test process
// (parent-death signal), so no qemu is ever left behind.
//
// docs/testing.md has the measured costs.
package guest
