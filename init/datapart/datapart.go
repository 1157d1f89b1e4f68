// Package datapart prepares kiln's data partition (GPT label "kiln-data",
// partition 4 of the disk the running root is on) and mounts it at /data:
// a blank partition is grown to fill the disk and formatted ext4; an ext file
// system is checked with e2fsck -p, grown with the partition and resized
// online; anything else is left untouched and reported. Only Format, called
// after an operator's typed confirmation in the recovery menu, ever erases a
// partition that is not blank.
package datapart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/init/blockdev"
	"kiln.dev/kiln/init/gpt"
	"kiln.dev/kiln/partitions"
)

// Errors Setup returns; the message carries what to do.
var (
	ErrNotFound       = errors.New("data partition not found")
	ErrForeign        = errors.New("data partition holds something else")
	ErrCorrupt        = errors.New("data file system has errors e2fsck -p cannot fix")
	ErrRebootRequired = errors.New("e2fsck asks for a reboot")
)

// Runner runs a command to completion; PID 1 passes its reaper so that the
// tools' exit statuses are not stolen.
type Runner interface {
	Run(cmd *exec.Cmd) error
}

type execRunner struct{}

func (execRunner) Run(cmd *exec.Cmd) error { return cmd.Run() }

// Tools are the e2fsprogs programs.
type Tools struct {
	Mke2fs, E2fsck, Resize2fs string
}

// DefaultTools looks the programs up in PATH, falling back to /sbin.
func DefaultTools() Tools {
	find := func(n string) string {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		return "/sbin/" + n
	}
	return Tools{Mke2fs: find("mke2fs"), E2fsck: find("e2fsck"), Resize2fs: find("resize2fs")}
}

// Manager finds, prepares and mounts the data partition of one disk.
type Manager struct {
	Sys blockdev.Sys
	// Disk is the kernel name of the disk holding the running root.
	Disk string
	// Mountpoint is where the file system goes; default /data.
	Mountpoint string
	Tools      Tools
	Runner     Runner
	// Out receives the tools' output (the console); default io.Discard.
	Out io.Writer
	Log *slog.Logger

	log *slog.Logger
}

// Status describes the data partition after Setup.
type Status struct {
	Device    string // e.g. /dev/vda4
	Signature Signature
	Formatted bool  // a file system was created this boot
	GrewBy    int64 // bytes the partition grew this boot
	Mounted   bool
}

func (m *Manager) defaults() {
	if m.Mountpoint == "" {
		m.Mountpoint = "/data"
	}
	if m.Tools == (Tools{}) {
		m.Tools = DefaultTools()
	}
	if m.Runner == nil {
		m.Runner = execRunner{}
	}
	if m.Out == nil {
		m.Out = io.Discard
	}
	if m.Log == nil {
		m.Log = slog.Default()
	}
	m.log = m.Log.With("component", "datapart")
}

// Locate finds the data partition on the disk: the entry labeled
// "kiln-data", or else entry 4 if its type is Linux data.
func (m *Manager) Locate() (blockdev.Found, error) {
	data, _ := partitions.ByRole(partitions.RoleData)
	f, err := m.Sys.FindOnDisk(m.Disk, func(e gpt.Entry) bool { return e.Name == data.Label })
	if err == nil {
		return f, nil
	}
	f, err2 := m.Sys.FindOnDisk(m.Disk, func(e gpt.Entry) bool {
		return e.Index == data.Index && strings.EqualFold(e.Type, data.Type)
	})
	if err2 == nil {
		return f, nil
	}
	return blockdev.Found{}, fmt.Errorf("%w on disk %s: no GPT partition labeled %q and no Linux data partition %d (%v)", ErrNotFound, m.Disk, data.Label, data.Index, err)
}

// Setup checks, grows, formats (only when blank) and mounts the data
// partition, and creates state, log and config directories on it.
func (m *Manager) Setup(ctx context.Context) (Status, error) {
	m.defaults()
	f, err := m.Locate()
	if err != nil {
		return Status{}, err
	}
	dev, err := m.Sys.EnsureNode(f.Part)
	if err != nil {
		return Status{}, err
	}
	st := Status{Device: dev}
	sig, err := detectDevice(dev)
	if err != nil {
		return st, err
	}
	st.Signature = sig
	switch sig.Kind {
	case Foreign:
		return st, fmt.Errorf("%w: %s contains %s. kiln does not erase it on its own: if this disk is meant for kiln, choose \"format data partition\" in the recovery menu (this erases it); otherwise boot from the right disk", ErrForeign, dev, sig.Name)
	case Ext:
		if err := m.fsck(ctx, dev, "-p"); err != nil {
			return st, err
		}
	}
	grew, err := m.grow(f)
	if err != nil {
		// Not fatal: the partition keeps its size.
		m.log.Warn("growing the data partition failed; it keeps its size", "device", dev, "err", err)
	}
	st.GrewBy = grew
	if sig.Kind == Blank {
		m.log.Info("data partition is blank; creating an ext4 file system", "device", dev)
		if err := m.mkfs(ctx, dev, false); err != nil {
			return st, err
		}
		st.Formatted = true
	}
	if sig.Kind == Ext {
		// Offline resize: it needs no CAP_SYS_RESOURCE and no online-resize
		// support, and a forced check first is what resize2fs demands.
		if err := m.resizeIfSmaller(ctx, dev); err != nil {
			if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrRebootRequired) {
				return st, err
			}
			m.log.Warn("growing the data file system failed; it keeps its size", "device", dev, "err", err)
		}
	}
	if err := m.mount(dev); err != nil {
		return st, err
	}
	st.Mounted = true
	if err := MakeDirs(m.Mountpoint); err != nil {
		return st, fmt.Errorf("on the data partition: %w", err)
	}
	return st, nil
}

// dirModes are the modes of the directories MakeDirs keeps under the data
// root: state holds the database, keys and tokens and config may hold
// notification credentials, so only root enters them; logs are readable by
// root's group.
var dirModes = map[string]os.FileMode{"state": 0o700, "config": 0o700, "log": 0o750}

// MakeDirs creates state, log and config under root with their modes (see
// dirModes) whatever the umask, and tightens them where an older kiln made
// them more open. PID 1 also calls it for a temporary /data.
func MakeDirs(root string) error {
	for _, d := range []string{"state", "log", "config"} {
		p, mode := filepath.Join(root, d), dirModes[d]
		if err := os.MkdirAll(p, mode); err != nil {
			return fmt.Errorf("creating %s: %w", p, err)
		}
		if err := os.Chmod(p, mode); err != nil {
			return fmt.Errorf("setting the mode of %s: %w", p, err)
		}
	}
	return nil
}

// Inspect reports the data partition's device and content without changing anything.
func (m *Manager) Inspect() (Status, error) {
	m.defaults()
	f, err := m.Locate()
	if err != nil {
		return Status{}, err
	}
	dev, err := m.Sys.EnsureNode(f.Part)
	if err != nil {
		return Status{}, err
	}
	sig, err := detectDevice(dev)
	return Status{Device: dev, Signature: sig}, err
}

// Format erases the data partition and creates an empty ext4 file system,
// whatever it held. Call it only after an operator confirmed; the partition
// must not be mounted. It grows the partition first.
func (m *Manager) Format(ctx context.Context) error {
	m.defaults()
	f, err := m.Locate()
	if err != nil {
		return err
	}
	dev, err := m.Sys.EnsureNode(f.Part)
	if err != nil {
		return err
	}
	if mounted(dev) {
		return fmt.Errorf("formatting %s: it is mounted; unmount %s first", dev, m.Mountpoint)
	}
	if _, err := m.grow(f); err != nil {
		m.log.Warn("growing the data partition failed; formatting at its current size", "device", dev, "err", err)
	}
	// Wipe old signatures (LUKS, LVM, btrfs at 64 KiB …) so nothing stale remains.
	if err := wipeStart(dev); err != nil {
		return err
	}
	m.log.Warn("formatting data partition at operator's request", "device", dev)
	return m.mkfs(ctx, dev, true)
}

func detectDevice(dev string) (Signature, error) {
	f, err := os.Open(dev)
	if err != nil {
		return Signature{}, fmt.Errorf("opening data partition: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return Signature{}, fmt.Errorf("sizing %s: %w", dev, err)
	}
	sig, err := Detect(f, size)
	if err != nil {
		return Signature{}, fmt.Errorf("%s: %w", dev, err)
	}
	return sig, nil
}

func wipeStart(dev string) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dev, err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, probeSize), 0); err != nil {
		return fmt.Errorf("wiping %s: %w", dev, err)
	}
	return f.Sync()
}

// fsck runs e2fsck in preen mode (flags "-p" or "-f -p") and maps its exit status.
func (m *Manager) fsck(ctx context.Context, dev string, flags ...string) error {
	cmd := exec.CommandContext(ctx, m.Tools.E2fsck, append(flags, dev)...)
	cmd.Stdout, cmd.Stderr = m.Out, m.Out
	err := m.Runner.Run(cmd)
	code := exitCode(err)
	switch {
	case code == 0:
		return nil
	case code == 1:
		m.log.Warn("e2fsck corrected errors on the data file system", "device", dev)
		return nil
	case code == 2 || code == 3:
		return fmt.Errorf("%w: e2fsck -p %s corrected errors and exited %d; reboot to continue", ErrRebootRequired, dev, code)
	case code < 0:
		return fmt.Errorf("running %s: %w (the root image must contain e2fsprogs)", m.Tools.E2fsck, err)
	default:
		return fmt.Errorf("%w: e2fsck -p %s exited %d. The data is kept: choose \"shell\" in the recovery menu and run \"e2fsck -f %s\" to repair it interactively, or \"format data partition\" to erase it", ErrCorrupt, dev, code, dev)
	}
}

func (m *Manager) mkfs(ctx context.Context, dev string, force bool) error {
	data, _ := partitions.ByRole(partitions.RoleData)
	args := []string{"-q", "-t", "ext4", "-L", data.Label}
	if force {
		args = append(args, "-F")
	}
	cmd := exec.CommandContext(ctx, m.Tools.Mke2fs, append(args, dev)...)
	cmd.Stdout, cmd.Stderr = m.Out, m.Out
	if err := m.Runner.Run(cmd); err != nil {
		return fmt.Errorf("creating ext4 on %s with %s: %w", dev, m.Tools.Mke2fs, err)
	}
	return nil
}

func (m *Manager) mount(dev string) error {
	if err := os.MkdirAll(m.Mountpoint, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", m.Mountpoint, err)
	}
	if err := unix.Mount(dev, m.Mountpoint, "ext4", unix.MS_NOATIME|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		if errors.Is(err, unix.EUCLEAN) || errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("%w: mounting %s at %s: %v. The data is kept: choose \"shell\" in the recovery menu and run \"e2fsck -f %s\" to repair it, or \"format data partition\" to erase it", ErrCorrupt, dev, m.Mountpoint, err, dev)
		}
		return fmt.Errorf("mounting %s (ext4) at %s: %w", dev, m.Mountpoint, err)
	}
	return nil
}

// resizeIfSmaller grows the (unmounted) file system when the partition is at
// least 1 MiB larger (also when a previous boot grew only the partition).
func (m *Manager) resizeIfSmaller(ctx context.Context, dev string) error {
	sig, err := detectDevice(dev)
	if err != nil {
		return err
	}
	size, err := deviceSize(dev)
	if err != nil {
		return err
	}
	if sig.Kind != Ext || size-sig.Bytes < 1<<20 {
		return nil
	}
	m.log.Info("growing the data file system to fill its partition", "device", dev, "from", sig.Bytes, "to", size)
	if err := m.fsck(ctx, dev, "-f", "-p"); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, m.Tools.Resize2fs, dev)
	cmd.Stdout, cmd.Stderr = m.Out, m.Out
	if err := m.Runner.Run(cmd); err != nil {
		return fmt.Errorf("resize2fs %s: %w", dev, err)
	}
	return nil
}

// grow extends the partition to the end of the disk in the GPT and tells the
// kernel the new size. It returns the bytes gained.
func (m *Manager) grow(f blockdev.Found) (int64, error) {
	disk := m.Sys.Node(f.Disk)
	d, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("opening disk %s: %w", disk, err)
	}
	defer d.Close()
	size, err := d.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("sizing disk %s: %w", disk, err)
	}
	g, ok, err := f.Table.PlanGrow(f.Entry.Index, size, 1<<20)
	if err != nil || !ok {
		return 0, err
	}
	if err := f.Table.Apply(d, g); err != nil {
		return 0, err
	}
	ss := int64(f.Table.SectorSize)
	start := int64(f.Entry.FirstLBA) * ss
	length := int64(g.NewLastLBA-f.Entry.FirstLBA+1) * ss
	if err := resizePartition(d, f.Entry.Index, start, length); err != nil {
		return 0, fmt.Errorf("GPT updated but the kernel kept the old size until reboot: %w", err)
	}
	gained := int64(g.NewLastLBA-g.OldLastLBA) * ss
	m.log.Info("grew the data partition to the end of the disk", "disk", f.Disk, "partition", f.Entry.Index, "gained_bytes", gained)
	return gained, nil
}

// resizePartition tells the kernel a partition's new extent (BLKPG_RESIZE_PARTITION).
func resizePartition(disk *os.File, index int, start, length int64) error {
	p := unix.BlkpgPartition{Start: start, Length: length, Pno: int32(index)}
	arg := unix.BlkpgIoctlArg{Op: unix.BLKPG_RESIZE_PARTITION, Datalen: int32(unsafe.Sizeof(p)), Data: (*byte)(unsafe.Pointer(&p))}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, disk.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg)))
	if e != 0 {
		return fmt.Errorf("BLKPG resize partition %d: %w", index, e)
	}
	return nil
}

func deviceSize(dev string) (int64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

// mounted reports whether dev appears as a mount source in /proc/self/mounts.
func mounted(dev string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == dev {
			return true
		}
	}
	return false
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
