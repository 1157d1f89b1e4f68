// Package stage1 is the initramfs program (/init): it mounts the kernel file
// systems, loads the modules that reach the root disk, finds the root
// partition by the PARTUUID on the kernel command line, maps it through
// dm-verity with the root hash on the command line, mounts the verified
// squashfs read-only and switches root to it, executing /sbin/init. On any failure it
// says what failed and what it saw, counts down and reboots; it never hangs.
package stage1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/init/blockdev"
	"kiln.dev/kiln/init/coldplug"
	"kiln.dev/kiln/init/gpt"
	"kiln.dev/kiln/init/kmod"
)

// Options tune a boot; Main uses the defaults.
type Options struct {
	// Out receives the console messages.
	Out io.Writer
	// RootWait bounds the wait for the root partition; default 30 s.
	RootWait time.Duration
	// FailDelay is the countdown before rebooting after a failure; default 60 s.
	FailDelay time.Duration
}

const newRoot = "/newroot"

// Main runs stage 1 as PID 1 of the initramfs. It only returns if exec fails
// and the reboot after it fails too.
func Main(o Options) {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.RootWait == 0 {
		o.RootWait = 30 * time.Second
	}
	if o.FailDelay == 0 {
		o.FailDelay = 60 * time.Second
	}
	err := boot(o)
	fail(o, err)
}

func printf(o Options, format string, args ...any) {
	fmt.Fprintf(o.Out, "kiln-stage1: "+format+"\n", args...)
}

func boot(o Options) error {
	if err := mountEarly(); err != nil {
		return err
	}
	ensureConsole()
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("reading /proc/cmdline: %w", err)
	}
	cl, err := ParseCmdline(string(b))
	if err != nil {
		return err
	}
	slot := cl.Slot
	switch {
	case cl.Live != "":
		printf(o, "live system: looking for the kiln live ISO %s", cl.Live)
	case slot == "":
		slot = "?"
		printf(o, "warning: kernel command line has no kiln.slot=a|b; the boot entry is malformed")
		fallthrough
	default:
		printf(o, "slot %s root PARTUUID=%s", slot, cl.RootPARTUUID)
	}

	// The kernel asks /sbin/modprobe for modules (fs-squashfs …); this binary answers.
	_ = os.MkdirAll("/sbin", 0o755)
	_ = os.Symlink("/init", "/sbin/modprobe")

	log := slog.New(slog.NewTextHandler(o.Out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	loader, err := kmod.NewLoader(kmod.Options{Logger: log})
	if err != nil {
		printf(o, "warning: no module index (%v); continuing with built-in drivers only", err)
		loader = nil
	}
	if loader != nil && !hasFilesystem("squashfs") {
		if err := loader.Load("squashfs", ""); err != nil {
			return fmt.Errorf("loading squashfs module: %w", err)
		}
	}
	if loader != nil && !loader.Loaded("dm_verity") {
		if err := loader.Load("dm-verity", ""); err != nil {
			return fmt.Errorf("loading the dm-verity module (the verified root needs it): %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.RootWait)
	defer cancel()
	// The root is a squashfs followed by its hash tree: a slot's partition,
	// or on the live ISO a loop device over LIVE/ROOT.SFS. Either way it is
	// mounted only through dm-verity.
	var part, verityID string
	if cl.Live != "" {
		if loader != nil {
			if err := loader.Load("loop", ""); err != nil {
				return fmt.Errorf("loading the loop module (live system): %w", err)
			}
		}
		m, err := WaitForLive(ctx, o, blockdev.Default, "/sys/devices", cl.Live, loader, 250*time.Millisecond)
		if err != nil {
			return err
		}
		if part, err = AttachLoop(blockdev.Default, m); err != nil {
			return err
		}
		printf(o, "live root: %s at byte %d (%d bytes) on %s", LiveRootPath, m.Offset, m.Size, m.Device)
		verityID = "LIVE-" + cl.Live
	} else {
		if part, err = WaitForRoot(ctx, o, blockdev.Default, "/sys/devices", cl.RootPARTUUID, loader, 250*time.Millisecond); err != nil {
			return err
		}
		verityID = cl.RootPARTUUID
	}
	dev, err := openVerity(o, blockdev.Default, part, cl.Verity, verityID)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", newRoot, err)
	}
	if err := unix.Mount(dev, newRoot, "squashfs", unix.MS_RDONLY, ""); err != nil {
		if errors.Is(err, unix.EIO) {
			return fmt.Errorf("mounting root %s: %w", dev, errRootRejected)
		}
		return fmt.Errorf("mounting root %s (squashfs, read-only) at %s: %w", dev, newRoot, err)
	}
	if _, err := os.Stat(filepath.Join(newRoot, cl.Init)); err != nil {
		return fmt.Errorf("root %s has no %s: %w (the root image is incomplete)", dev, cl.Init, err)
	}
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		if err := unix.Mount(m, filepath.Join(newRoot, m), "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("moving %s into the new root: %w (the root image needs an empty %s directory)", m, err, m)
		}
	}
	printf(o, "switching root")
	return switchRoot(newRoot, cl.Init)
}

// mountEarly mounts devtmpfs, proc and sysfs.
func mountEarly() error {
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

// ensureConsole attaches stdin/stdout/stderr to /dev/console when the kernel
// could not (an initramfs without a /dev/console node).
func ensureConsole() {
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

func hasFilesystem(name string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[len(f)-1] == name {
			return true
		}
	}
	return false
}

// WaitForRoot loads modules for the devices present (repeatedly: bus drivers
// reveal new devices) and looks for the partition with the PARTUUID until ctx
// ends. It returns the partition's device node. loader may be nil. After a
// few seconds without success it loads every module in the index, for
// storage whose modalias no module claims.
func WaitForRoot(ctx context.Context, o Options, sys blockdev.Sys, devices, partUUID string, loader *kmod.Loader, poll time.Duration) (string, error) {
	start := time.Now()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	loadedAll, announced := false, false
	var lastErr error
	for {
		if loader != nil {
			if _, err := coldplug.Once(devices, loader, log); err != nil {
				lastErr = err
			}
			if !loadedAll && time.Since(start) > 5*time.Second {
				loadedAll = true
				for _, m := range loader.Index().Modules() {
					_ = loader.Load(m, "")
				}
			}
		}
		f, err := sys.FindPartition(func(e gpt.Entry) bool { return strings.EqualFold(e.UUID, partUUID) })
		if err == nil {
			return sys.EnsureNode(f.Part)
		}
		lastErr = err
		if !announced && time.Since(start) > 5*time.Second {
			announced = true
			printf(o, "waiting for root partition PARTUUID=%s (%v)", partUUID, err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("root partition PARTUUID=%s not found after %s; %w", partUUID, time.Since(start).Round(time.Second), lastErr)
		case <-time.After(poll):
		}
	}
}

// switchRoot deletes the initramfs contents, makes newRoot the root and
// executes init there, like busybox switch_root.
func switchRoot(newRoot, init string) error {
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

// fail reports err, counts down and reboots.
func fail(o Options, err error) {
	printf(o, "FAILED: %v", err)
	printf(o, "the appliance cannot start; rebooting in %s (the boot loader falls back to the previous version after repeated failures)", o.FailDelay)
	for left := o.FailDelay; left > 0; left -= 10 * time.Second {
		printf(o, "rebooting in %s", left)
		time.Sleep(min(left, 10*time.Second))
	}
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		printf(o, "reboot failed: %v; exiting (the kernel panics and reboots after panic=)", err)
	}
}
