// Package switchroot holds the steps every kiln initramfs program shares:
// mounting the kernel file systems, attaching the console, moving them into
// the new root and switching root to it, like busybox switch_root.
package switchroot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// MountKernelFS mounts devtmpfs, proc and sysfs at /dev, /proc and /sys.
func MountKernelFS() error {
	for _, m := range []struct{ src, dst, fstype string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", m.dst, err)
		}
		flags := uintptr(unix.MS_NOSUID)
		if m.fstype != "devtmpfs" {
			flags |= unix.MS_NODEV | unix.MS_NOEXEC
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, flags, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mounting %s at %s: %w", m.fstype, m.dst, err)
		}
	}
	return nil
}

// AttachConsole attaches stdin/stdout/stderr to /dev/console when the
// kernel could not (an initramfs without a /dev/console node).
func AttachConsole() {
	var st unix.Stat_t
	if unix.Fstat(1, &st) == nil {
		return
	}
	fd, err := unix.Open("/dev/console", unix.O_RDWR, 0)
	if err != nil {
		return
	}
	for i := 0; i < 3; i++ {
		_ = unix.Dup2(fd, i)
	}
	if fd > 2 {
		unix.Close(fd)
	}
}

// MoveKernelFS moves /dev, /proc and /sys below newRoot, whose directories
// for them must exist.
func MoveKernelFS(newRoot string) error {
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		if err := unix.Mount(m, filepath.Join(newRoot, m), "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("moving %s into the new root: %w (the root image needs an empty %s directory)", m, err, m)
		}
	}
	return nil
}

// Exec deletes the initramfs contents, makes newRoot the root and executes
// init there. It returns only on failure.
func Exec(newRoot, init string) error {
	var rootSt unix.Stat_t
	if err := unix.Stat("/", &rootSt); err != nil {
		return fmt.Errorf("stat /: %w", err)
	}
	removeSameDev("/", rootSt.Dev, newRoot)
	if err := unix.Chdir(newRoot); err != nil {
		return fmt.Errorf("entering %s: %w", newRoot, err)
	}
	if err := unix.Mount(newRoot, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot into the new root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	if err := unix.Exec(init, []string{init}, os.Environ()); err != nil {
		return fmt.Errorf("executing %s: %w", init, err)
	}
	return nil
}

// removeSameDev removes everything under dir that lives on device dev (the
// initramfs), leaving other mounts and skip alone. Errors are ignored: this
// only frees memory.
func removeSameDev(dir string, dev uint64, skip string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if p == skip {
			continue
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil || st.Dev != dev {
			continue
		}
		if e.IsDir() {
			removeSameDev(p, dev, skip)
			_ = unix.Rmdir(p)
			continue
		}
		_ = unix.Unlink(p)
	}
}

// RebootAfter counts delay down through say (every 10 s), syncs and
// reboots. It returns only when the reboot fails, after saying so (PID 1
// exiting then panics the kernel, which reboots after panic=).
func RebootAfter(say func(format string, args ...any), delay time.Duration) {
	for left := delay; left > 0; left -= 10 * time.Second {
		say("rebooting in %s", left)
		time.Sleep(min(left, 10*time.Second))
	}
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		say("reboot failed: %v; exiting (the kernel panics and reboots after panic=)", err)
	}
}
