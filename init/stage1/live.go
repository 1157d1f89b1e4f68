package stage1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/init/blockdev"
	"kiln.dev/kiln/init/coldplug"
	"kiln.dev/kiln/init/isofs"
	"kiln.dev/kiln/init/kmod"
)

// LiveRootPath is the root squashfs inside a kiln live ISO (image.ISORoot).
const LiveRootPath = "LIVE/ROOT.SFS"

// LiveMedium is the disk or CD-ROM a live ISO was found on, and where its root
// squashfs lies in it.
type LiveMedium struct {
	Device string // e.g. /dev/sr0, /dev/sda
	Offset int64  // bytes
	Size   int64  // bytes
}

// liveSetID is how the ISO carries the live ID (partitions.LiveVolumeSetID;
// stage 1 keeps its own copy to stay free of kiln's other packages).
func liveSetID(liveID string) string {
	return "KILN_LIVE_" + strings.ReplaceAll(strings.ToUpper(liveID), "-", "")
}

// FindLive looks at every whole disk (CD-ROMs included) for the ISO 9660
// volume whose set ID carries liveID and returns where its root squashfs is.
func FindLive(sys blockdev.Sys, liveID string) (LiveMedium, error) {
	disks, err := sys.Disks()
	if err != nil {
		return LiveMedium{}, err
	}
	want := liveSetID(liveID)
	var seen []string
	for _, d := range disks {
		if strings.HasPrefix(d.Name, "loop") {
			continue
		}
		node, err := sys.EnsureNode(d.Name)
		if err != nil {
			seen = append(seen, d.Name+": "+err.Error())
			continue
		}
		m, err := liveOn(node, want)
		if err == nil {
			return m, nil
		}
		seen = append(seen, d.Name+": "+err.Error())
	}
	return LiveMedium{}, fmt.Errorf("no disk holds the kiln live ISO %s (%s)", liveID, strings.Join(seen, "; "))
}

func liveOn(node, wantSetID string) (LiveMedium, error) {
	f, err := os.Open(node)
	if err != nil {
		return LiveMedium{}, err
	}
	defer f.Close()
	v, err := isofs.Open(f)
	if err != nil {
		return LiveMedium{}, err
	}
	if v.SetID != wantSetID {
		return LiveMedium{}, fmt.Errorf("ISO %q is another medium (%s)", v.ID, v.SetID)
	}
	e, err := v.Lookup(LiveRootPath)
	if err != nil {
		return LiveMedium{}, err
	}
	magic := make([]byte, 4)
	if _, err := f.ReadAt(magic, e.Offset); err != nil || string(magic) != "hsqs" {
		return LiveMedium{}, fmt.Errorf("%s in the ISO is not a squashfs (the ISO is damaged; write it again)", LiveRootPath)
	}
	return LiveMedium{Device: node, Offset: e.Offset, Size: int64(e.Size)}, nil
}

// WaitForLive loads modules for the devices present and looks for the live
// medium until ctx ends, like WaitForRoot.
func WaitForLive(ctx context.Context, o Options, sys blockdev.Sys, devices, liveID string, loader *kmod.Loader, poll time.Duration) (LiveMedium, error) {
	start := time.Now()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	announced := false
	for {
		if loader != nil {
			_, _ = coldplug.Once(devices, loader, log)
		}
		m, err := FindLive(sys, liveID)
		if err == nil {
			return m, nil
		}
		if !announced && time.Since(start) > 5*time.Second {
			announced = true
			printf(o, "waiting for the live medium (%v)", err)
		}
		select {
		case <-ctx.Done():
			return LiveMedium{}, fmt.Errorf("live medium not found after %s: %w", time.Since(start).Round(time.Second), err)
		case <-time.After(poll):
		}
	}
}

// AttachLoop binds a free loop device, read-only, to the root squashfs's
// bytes inside the medium and returns the loop device's node.
func AttachLoop(sys blockdev.Sys, m LiveMedium) (string, error) {
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("opening /dev/loop-control: %w (the loop module is missing from the initramfs)", err)
	}
	defer unix.Close(ctl)
	backing, err := unix.Open(m.Device, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", m.Device, err)
	}
	defer unix.Close(backing)
	for range 8 { // another opener may take the free device first
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", fmt.Errorf("finding a free loop device: %w", err)
		}
		node, err := sys.EnsureNode(fmt.Sprintf("loop%d", n))
		if err != nil {
			return "", err
		}
		fd, err := unix.Open(node, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", fmt.Errorf("opening %s: %w", node, err)
		}
		cfg := unix.LoopConfig{Fd: uint32(backing), Info: unix.LoopInfo64{
			Offset: uint64(m.Offset), Sizelimit: uint64(m.Size), Flags: unix.LO_FLAGS_READ_ONLY,
		}}
		err = unix.IoctlLoopConfigure(fd, &cfg)
		unix.Close(fd)
		if errors.Is(err, unix.EBUSY) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("binding %s to %s at byte %d: %w", node, m.Device, m.Offset, err)
		}
		return node, nil
	}
	return "", errors.New("binding a loop device: every free one was taken")
}
