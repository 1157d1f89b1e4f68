package pid1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/init/blockdev"
	"kiln.dev/kiln/init/gpt"
	"kiln.dev/kiln/init/kmod"
	"kiln.dev/kiln/internal/cmdline"
	"kiln.dev/kiln/partitions"
	"kiln.dev/kiln/services/config"
)

func sysDefault() blockdev.Sys { return blockdev.Default }

type mount struct {
	src, target, fstype string
	flags               uintptr
	data                string
	optional            bool // skip silently when the file system or target is missing
}

// baseMounts are the kernel and scratch file systems PID 1 needs, in order.
var baseMounts = []mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", false},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", false},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755", false},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666", false},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", false},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755", false},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", false},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", true},
	{"efivarfs", "/sys/firmware/efi/efivars", "efivarfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", true},
}

// MountBase mounts what is not mounted yet of /proc, /sys, /dev (stage 1
// moved those), /dev/pts, /dev/shm, /run, /tmp, cgroup2 and efivarfs, and adds
// the /dev/fd and /dev/std* links. It returns one error per failed mount.
func MountBase() []error {
	var errs []error
	for _, m := range baseMounts {
		if isMountpoint(m.target) {
			continue
		}
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			if !m.optional {
				errs = append(errs, fmt.Errorf("creating %s: %w", m.target, err))
			}
			continue
		}
		if err := unix.Mount(m.src, m.target, m.fstype, m.flags, m.data); err != nil && !m.optional {
			errs = append(errs, fmt.Errorf("mounting %s at %s: %w", m.fstype, m.target, err))
		}
	}
	for link, target := range map[string]string{"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0", "/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"} {
		_ = os.Symlink(target, link)
	}
	return errs
}

// isMountpoint reports whether target is a mount point per /proc/self/mountinfo.
func isMountpoint(target string) bool {
	if target == "/proc" {
		_, err := os.Stat("/proc/self/mountinfo")
		return err == nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	_, ok := findMount(f, target)
	return ok
}

// findMount returns the "major:minor" of the last mount at target in a
// mountinfo stream (the last one is the visible one).
func findMount(r io.Reader, target string) (string, bool) {
	sc := bufio.NewScanner(r)
	var dev string
	found := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 4 && unescapeMountinfo(f[4]) == target {
			dev, found = f[2], true
		}
	}
	return dev, found
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// RootDisk returns the kernel name of the disk that holds the mounted root:
// from the device of "/" in mountinfo, or else from root=PARTUUID= on the
// kernel command line.
func RootDisk() (string, error) {
	sys := blockdev.Default
	var dev string
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		dev, _ = findMount(f, "/")
		f.Close()
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(dev, "%d:%d", &major, &minor); err == nil && major != 0 {
		if part, err := sys.NameOfDev(major, minor); err == nil {
			if disk, err := sys.DiskOf(part); err == nil {
				return disk, nil
			}
		}
	}
	uuid, ok := strings.CutPrefix(cmdlineParam("root"), "PARTUUID=")
	if !ok {
		return "", fmt.Errorf("root device %q is not a partition and the kernel command line has no root=PARTUUID=", dev)
	}
	f, err := sys.FindPartition(func(e gpt.Entry) bool { return strings.EqualFold(e.UUID, uuid) })
	if err != nil {
		return "", fmt.Errorf("root partition PARTUUID=%s: %w", uuid, err)
	}
	return f.Disk, nil
}

// cmdlineParam returns a kernel command line parameter's value ("" if absent).
func cmdlineParam(key string) string {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return ""
	}
	v, _ := cmdline.Parse(string(b)).First(key)
	return v
}

// MountESP mounts the EFI system partition of disk at /boot/efi.
func MountESP(l *kmod.Loader, disk string) error {
	esp, _ := partitions.ByRole(partitions.RoleESP)
	f, err := blockdev.Default.FindOnDisk(disk, func(e gpt.Entry) bool {
		return e.Name == esp.Label || strings.EqualFold(e.Type, partitions.TypeESP)
	})
	if err != nil {
		return fmt.Errorf("finding the ESP on %s: %w", disk, err)
	}
	dev, err := blockdev.Default.EnsureNode(f.Part)
	if err != nil {
		return err
	}
	if l != nil {
		for _, m := range []string{"vfat", "nls_cp437", "nls_ascii", "nls_iso8859-1", "nls_utf8"} {
			_ = l.Load(m, "") // built in or absent: the mount below says
		}
	}
	if err := os.MkdirAll("/boot/efi", 0o755); err != nil {
		return fmt.Errorf("creating /boot/efi: %w", err)
	}
	// The kernel's default I/O charset (Debian: ascii) may be a module the
	// image lacks; names on the ESP are ASCII anyway, so fall back to others.
	var err2 error
	for _, cs := range []string{"", ",iocharset=iso8859-1", ",utf8"} {
		err2 = unix.Mount(dev, "/boot/efi", "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_NOATIME, "umask=0077,shortname=mixed"+cs)
		if !errors.Is(err2, unix.EINVAL) {
			break
		}
	}
	if err2 != nil {
		return fmt.Errorf("mounting the ESP %s (vfat) at /boot/efi: %w", dev, err2)
	}
	return nil
}

// LoadConfig loads the first config file that exists of paths, in order of
// precedence: PID 1 passes the QEMU fw_cfg config (if any), the persistent one
// (on /data) and the built-in one (in the image). An invalid file falls back
// to the next, and when none is valid to the defaults; the error then says
// what was wrong and what is used instead.
func LoadConfig(paths ...string) (config.Config, string, error) {
	var problems []error
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		c, err := config.Load(p)
		if err == nil {
			if len(problems) > 0 {
				return c, p, fmt.Errorf("%w; using %s instead until it is fixed (edit it in the recovery shell or through the API)", errors.Join(problems...), p)
			}
			return c, p, nil
		}
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return config.Default(), "", fmt.Errorf("%w; using built-in defaults", errors.Join(problems...))
	}
	return config.Default(), "", nil
}
