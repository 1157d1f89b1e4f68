// Package loopdev attaches files to loop block devices, so kiln can mount
// a file system kept in a file: a squashfs root image while it is copied in,
// a home's ext4 image while it is exported. Devices are set to free
// themselves when their last mount goes (autoclear), so nothing leaks.
package loopdev

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Device is an attached loop device, held open: with autoclear the kernel
// frees a device when its last user goes, so the caller mounts it first
// and closes it after (the mount keeps it until unmounted).
type Device struct {
	Path string
	f    *os.File
}

// Close drops this hold on the device; unmounted, it is freed.
func (d *Device) Close() error { return d.f.Close() }

// Attach binds file to a free loop device.
func Attach(file string, readOnly bool) (*Device, error) {
	if _, err := os.Stat("/dev/loop-control"); errors.Is(err, fs.ErrNotExist) {
		if out, err := exec.Command("modprobe", "loop").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("loading the loop module: %v: %s", err, out)
		}
	}
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/loop-control: %w", err)
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return nil, fmt.Errorf("finding a free loop device: %w", err)
	}
	dev := fmt.Sprintf("/dev/loop%d", n)
	mode, flags := os.O_RDWR, uint32(unix.LO_FLAGS_AUTOCLEAR)
	if readOnly {
		mode, flags = os.O_RDONLY, flags|unix.LO_FLAGS_READ_ONLY
	}
	loop, err := os.OpenFile(dev, mode, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", dev, err)
	}
	img, err := os.OpenFile(file, mode, 0)
	if err != nil {
		loop.Close()
		return nil, err
	}
	defer img.Close()
	// One LOOP_CONFIGURE (Linux 5.8) binds the file and sets the flags.
	cfg := unix.LoopConfig{Fd: uint32(img.Fd())}
	cfg.Info.Flags = flags
	copy(cfg.Info.File_name[:], file)
	if err := unix.IoctlLoopConfigure(int(loop.Fd()), &cfg); err != nil {
		loop.Close()
		return nil, fmt.Errorf("attaching %s to %s: %w", file, dev, err)
	}
	return &Device{Path: dev, f: loop}, nil
}

// Resized tells dev that its file grew (LOOP_SET_CAPACITY).
func Resized(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.IoctlSetInt(int(f.Fd()), unix.LOOP_SET_CAPACITY, 0)
}

// MountSource returns the device mounted on dir, per /proc/self/mountinfo,
// and whether dir is a mount point.
func MountSource(dir string) (string, bool) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	dir = filepath.Clean(dir)
	src, found := "", false
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint options... - fstype source superopts
		f := strings.Fields(line)
		if len(f) < 5 || unescape(f[4]) != dir {
			continue
		}
		for i, w := range f {
			if w == "-" && i+2 < len(f) {
				src, found = f[i+2], true // the last mount on dir wins
			}
		}
	}
	return src, found
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and '\'.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
