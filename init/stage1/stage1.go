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
	"kiln.dev/kiln/init/switchroot"
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
	if err := switchroot.MountKernelFS(); err != nil {
		return err
	}
	switchroot.AttachConsole()
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
	if err := switchroot.MoveKernelFS(newRoot); err != nil {
		return err
	}
	printf(o, "switching root")
	return switchroot.Exec(newRoot, cl.Init)
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

// fail reports err, counts down and reboots.
func fail(o Options, err error) {
	printf(o, "FAILED: %v", err)
	printf(o, "the appliance cannot start; rebooting in %s (the boot loader falls back to the previous version after repeated failures)", o.FailDelay)
	switchroot.RebootAfter(func(format string, args ...any) { printf(o, format, args...) }, o.FailDelay)
}
