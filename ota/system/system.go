// Package system finds the running appliance's OTA pieces — the running slot
// and root PARTUUID from the kernel command line, the ESP mounted at
// /boot/efi, the trusted keys baked into the image, the state file on /data
// and the one-at-a-time lock in the run dir — and builds the installer and
// the slot controller from them, so PID 1, the management service, the pull
// service and the CLI all see the same appliance.
package system

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"kiln.dev/kiln/init/blockdev"
	"kiln.dev/kiln/internal/cmdline"
	"kiln.dev/kiln/ota/bundle"
	"kiln.dev/kiln/ota/espfs"
	"kiln.dev/kiln/ota/install"
	"kiln.dev/kiln/ota/slots"
	"kiln.dev/kiln/partitions"
)

// Well-known paths inside the image.
const (
	ESPMount = "/boot/efi"
	KeysDir  = "/etc/kiln/ota-keys"
)

// ErrNotAppliance means kiln is not running from a kiln image (host mode):
// there are no slots to update.
var ErrNotAppliance = errors.New("not running from a kiln image (no kiln.slot= on the kernel command line): over-the-air updates apply only to the appliance")

// Paths say where to look; zero fields mean the appliance's defaults.
type Paths struct {
	Cmdline string // /proc/cmdline
	ESP     string // /boot/efi
	Keys    string // /etc/kiln/ota-keys
	// StateDir is the services' state dir (/data/state); RunDir the run dir
	// (/run/kiln). Both are required.
	StateDir, RunDir string
}

// System is the running appliance as OTA sees it.
type System struct {
	Slot     partitions.Slot
	RootUUID string
	// ESP is nil when it is not mounted.
	ESP espfs.FS
	// Keys are the trusted keys; KeysErr why there are none.
	Keys    []bundle.PublicKey
	KeysErr error
	State   *slots.Store
	// LockPath is the install/rollback lock.
	LockPath string
}

// Detect reads the kernel command line and checks the ESP and the keys.
// It fails with ErrNotAppliance outside a kiln image.
func Detect(p Paths) (*System, error) {
	if p.Cmdline == "" {
		p.Cmdline = "/proc/cmdline"
	}
	if p.ESP == "" {
		p.ESP = ESPMount
	}
	if p.Keys == "" {
		p.Keys = KeysDir
	}
	b, err := os.ReadFile(p.Cmdline)
	if err != nil {
		return nil, fmt.Errorf("reading the kernel command line: %w", err)
	}
	params := cmdline.Parse(string(b)).Map()
	slot, err := partitions.ParseSlot(params["kiln.slot"])
	if err != nil {
		return nil, ErrNotAppliance
	}
	s := &System{Slot: slot, LockPath: filepath.Join(p.RunDir, "ota.lock")}
	s.RootUUID, _ = strings.CutPrefix(params["root"], "PARTUUID=")
	if _, err := os.Stat(filepath.Join(p.ESP, "loader")); err == nil {
		s.ESP = espfs.Dir{Root: p.ESP}
	}
	s.Keys, s.KeysErr = bundle.ReadKeyDir(p.Keys)
	if p.StateDir != "" {
		s.State = &slots.Store{Path: slots.DefaultPath(p.StateDir)}
	}
	return s, nil
}

// Controller returns the slot controller.
func (s *System) Controller(log *slog.Logger) *slots.Controller {
	c := &slots.Controller{Running: s.Slot, State: s.State, LockPath: s.LockPath, Log: log}
	if s.ESP != nil {
		c.ESP = s.ESP
	}
	return c
}

// Installer returns the installer with tries as the default try counter.
func (s *System) Installer(tries int, log *slog.Logger) *install.Installer {
	in := &install.Installer{
		Running: s.Slot, State: s.State, Keys: s.Keys, LockPath: s.LockPath, Tries: tries, Log: log,
		Target: install.PartitionTargets(blockdev.Default, s.RootUUID),
		Now:    time.Now,
	}
	if s.ESP != nil {
		in.ESP = s.ESP
	}
	return in
}

// RunningGeneration returns the generation of the running slot's entry.
func (s *System) RunningGeneration() (int, error) {
	if s.ESP == nil {
		return 0, fmt.Errorf("the ESP is not mounted at %s", ESPMount)
	}
	entries, _, err := slots.Scan(s.ESP)
	if err != nil {
		return 0, err
	}
	e, ok := slots.OfSlot(entries, s.Slot)
	if !ok {
		return 0, fmt.Errorf("the running slot %s has no boot entry", s.Slot)
	}
	return e.Generation, nil
}

// RebootViaInit asks PID 1 for an orderly reboot (SIGTERM means reboot to
// kiln's init, as to busybox init).
func RebootViaInit() error {
	if err := syscall.Kill(1, syscall.SIGTERM); err != nil {
		return fmt.Errorf("asking PID 1 to reboot: %w", err)
	}
	return nil
}

// Identity names this appliance for the pull schedule's offset: the host
// name and the lowest hardware address of its network interfaces (unique
// even when a fleet shares one image and host name).
func Identity() string {
	host, _ := os.Hostname()
	var macs []string
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 && len(i.HardwareAddr) == 6 {
			macs = append(macs, i.HardwareAddr.String())
		}
	}
	sort.Strings(macs)
	if len(macs) > 0 {
		return host + "/" + macs[0]
	}
	return host
}
