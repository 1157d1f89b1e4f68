// Package pid1 is kiln's init: the sequence PID 1 runs after stage 1 switched
// root (mounts, modules, data partition, config, hostname, network,
// watchdog, power button), the services it starts through a Supervisor, the
// recovery consoles, zombie reaping, and the ordered shutdown it performs on
// request. It never panics the kernel on a problem it can describe: it says
// what is wrong and what to do, and keeps running so the recovery console
// can fix it.
package pid1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/init/bootnet"
	"kiln.dev/kiln/init/coldplug"
	"kiln.dev/kiln/init/datapart"
	"kiln.dev/kiln/init/kmod"
	"kiln.dev/kiln/init/powerbutton"
	"kiln.dev/kiln/init/reap"
	"kiln.dev/kiln/init/shutdown"
	"kiln.dev/kiln/init/watchdog"
	"kiln.dev/kiln/services/config"
)

// Supervisor runs the services; *supervisor.Supervisor implements it.
type Supervisor interface {
	// Start starts the enabled services in dependency order and returns.
	Start() error
	// Stop stops every service in reverse order; ctx's deadline turns
	// SIGTERM into SIGKILL. It is called once.
	Stop(ctx context.Context) error
	// Healthy returns an error while a service has been in a crash loop for
	// too long; the hardware watchdog is not petted then.
	Healthy() error
}

// Controller is what the recovery console may ask of PID 1; it satisfies
// console.Power and console.DataWiper.
type Controller interface {
	// Reboot and Poweroff start an orderly shutdown and return at once.
	Reboot(ctx context.Context) error
	Poweroff(ctx context.Context) error
	// FormatData stops the services, unmounts /data and erases the data
	// partition (an empty ext4); call it only after a typed confirmation.
	// A reboot should follow.
	FormatData(ctx context.Context) error
}

// Boot is what PID 1 established; it is handed to the supervisor's and the
// consoles' constructors and does not change afterwards.
type Boot struct {
	// Config is the appliance config in effect.
	Config config.Config
	// ConfigPath is the file it came from ("" for built-in defaults).
	ConfigPath string
	// Slot is the running root slot ("a" or "b", "" if unknown or live).
	Slot string
	// Live is set when the system runs from a live ISO (kiln.live=): the root
	// is the ISO's squashfs, /data is a tmpfs and there are no slots to update.
	Live bool
	// LiveID is kiln.live's value on a live system: the ID the live medium
	// carries (install to disk finds the medium by it).
	LiveID string
	// StateDir, LogDir and ConfigDir are on the data partition; RunDir is on /run.
	StateDir, LogDir, ConfigDir, RunDir string
	// Data is the data partition's status; DataErr why it is not mounted.
	Data    datapart.Status
	DataErr error
	// DataPart can Inspect and, after typed confirmation, Format the data partition.
	DataPart *datapart.Manager
	// Problems are operator-facing descriptions of what went wrong at boot.
	Problems []string
	// Reaper must start every child process of PID 1 (see package reap).
	Reaper *reap.Reaper
	// Control reboots, powers off and formats the data partition.
	Control Controller
	// Modules loads kernel modules (nil without a module index).
	Modules *kmod.Loader
	// Log is PID 1's logger.
	Log *slog.Logger
}

// Options configure PID 1; cmd/kiln/init.go fills them.
type Options struct {
	// Out is the console; default os.Stdout.
	Out io.Writer
	// NewSupervisor builds the supervisor once /data and the config are
	// ready. Nil means no services.
	NewSupervisor func(b *Boot) (Supervisor, error)
	// Console runs the recovery console on one terminal until ctx is done;
	// PID 1 restarts it when it returns. Nil means no console.
	Console func(ctx context.Context, tty string, b *Boot) error
	// AfterStart runs in its own goroutine once the services were started
	// (or could not be) and the consoles run; its ctx ends when a shutdown
	// begins. cmd/kiln uses it for the OTA health check of a new version.
	AfterStart func(ctx context.Context, b *Boot)
	// ConsoleTTYs default to /dev/ttyS0 and /dev/tty1 (those that exist).
	ConsoleTTYs []string
	// StartServicesWithoutData starts the services on a tmpfs /data when the
	// data partition cannot be mounted (default: do not, only the console runs).
	StartServicesWithoutData bool
	// WatchdogTimeout is the hardware timeout; default 30 s, petted every third of it.
	WatchdogTimeout time.Duration
	// ServiceStopDeadline bounds stopping the services at shutdown; default 20 s.
	ServiceStopDeadline time.Duration
}

// Init is PID 1.
type Init struct {
	o Options
	// base has no component attribute; packages PID 1 calls add their own.
	base *slog.Logger
	log  *slog.Logger
	// requests carries shutdown requests from signals, the power button and Controller calls.
	requests chan shutdown.Action
	// stopOnce makes stopping the services happen once (FormatData, shutdown).
	stopOnce sync.Once
	stopErr  error
	// stopping is set once services are being stopped on purpose: the
	// watchdog then only guards PID 1 itself.
	stopping atomic.Bool

	// mu guards the fields below.
	mu       sync.Mutex
	problems []string
	sup      Supervisor
	dataPart *datapart.Manager
	mounted  []string // writable mounts to unmount at shutdown, in mount order
}

// New returns PID 1 with options o.
func New(o Options) *Init {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.ConsoleTTYs == nil {
		o.ConsoleTTYs = []string{"/dev/ttyS0", "/dev/tty1"}
	}
	if o.WatchdogTimeout == 0 {
		o.WatchdogTimeout = 30 * time.Second
	}
	if o.ServiceStopDeadline == 0 {
		o.ServiceStopDeadline = 20 * time.Second
	}
	base := slog.New(slog.NewTextHandler(o.Out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return &Init{o: o, base: base, log: base.With("component", "init"), requests: make(chan shutdown.Action, 4)}
}

// Reboot asks for an orderly reboot; it returns at once.
func (p *Init) Reboot(context.Context) error { p.request(shutdown.Reboot); return nil }

// Poweroff asks for an orderly power-off; it returns at once.
func (p *Init) Poweroff(context.Context) error { p.request(shutdown.Poweroff); return nil }

// stopServices stops the supervisor once; later calls return the first result.
func (p *Init) stopServices(ctx context.Context) error {
	p.stopOnce.Do(func() {
		p.stopping.Store(true)
		p.mu.Lock()
		sup := p.sup
		p.mu.Unlock()
		if sup != nil {
			p.stopErr = sup.Stop(ctx)
		}
	})
	return p.stopErr
}

// FormatData implements Controller.
func (p *Init) FormatData(ctx context.Context) error {
	p.mu.Lock()
	dm := p.dataPart
	p.mu.Unlock()
	if dm == nil {
		return errors.New("the data partition was not found at boot; nothing to format")
	}
	sctx, cancel := context.WithTimeout(ctx, p.o.ServiceStopDeadline)
	err := p.stopServices(sctx)
	cancel()
	if err != nil {
		p.log.Warn("stopping services before formatting", "err", err)
	}
	if isMountpoint("/data") {
		unix.Sync()
		if err := unix.Unmount("/data", 0); err != nil {
			return fmt.Errorf("unmounting /data before formatting: %w (a process still uses it; reboot and format before services start)", err)
		}
		p.mu.Lock()
		p.mounted = slices.DeleteFunc(p.mounted, func(m string) bool { return m == "/data" })
		p.mu.Unlock()
	}
	return dm.Format(ctx)
}

func (p *Init) request(a shutdown.Action) {
	select {
	case p.requests <- a:
	default: // a shutdown is already pending
	}
}

// problem records and prints an operator-facing problem.
func (p *Init) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.mu.Lock()
	p.problems = append(p.problems, msg)
	p.mu.Unlock()
	fmt.Fprintf(p.o.Out, "kiln-init: PROBLEM: %s\n", msg)
}

// goSafe runs f in a goroutine; a panic there is reported instead of
// crashing PID 1 (which would panic the kernel).
func (p *Init) goSafe(name string, f func()) {
	go func() {
		defer func() {
			if r := recover(); r != nil {
				p.problem("%s crashed: %v (a bug; please report it with this log)\n%s", name, r, debug.Stack())
			}
		}()
		f()
	}()
}

// SignalAction maps a signal sent to PID 1 to a shutdown action, the way
// busybox init does (kiln reboot/poweroff and Ctrl-Alt-Del use these).
func SignalAction(s os.Signal) (shutdown.Action, bool) {
	switch s {
	case syscall.SIGTERM, syscall.SIGINT:
		return shutdown.Reboot, true
	case syscall.SIGUSR2, syscall.SIGPWR, syscall.SIGUSR1:
		return shutdown.Poweroff, true
	}
	return 0, false
}

// Run is PID 1's whole life. It returns only if the final reboot(2) fails.
func (p *Init) Run(ctx context.Context) error {
	defer func() {
		// A panic in PID 1 would panic the kernel without a word: say what
		// happened, then reboot like panic=10 would.
		if r := recover(); r != nil {
			fmt.Fprintf(p.o.Out, "kiln-init: PROBLEM: init crashed: %v (a bug; please report it with this log)\n%s", r, debug.Stack())
			fmt.Fprintln(p.o.Out, "kiln-init: rebooting in 10 s")
			unix.Sync()
			time.Sleep(10 * time.Second)
			_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
		}
	}()
	fmt.Fprintln(p.o.Out, "kiln-init: starting")
	os.Setenv("PATH", "/sbin:/bin:/usr/sbin:/usr/bin")
	os.Setenv("HOME", "/")
	unix.Umask(0o022)
	// Ctrl-Alt-Del sends SIGINT to PID 1 instead of rebooting at once.
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
		p.log.Warn("cannot route Ctrl-Alt-Del to init", "err", err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPWR)
	p.goSafe("signal handler", func() {
		for s := range sigs {
			if a, ok := SignalAction(s); ok {
				p.log.Info("shutdown requested by signal", "signal", s, "action", a)
				p.request(a)
			}
		}
	})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reaper := reap.New(p.base)
	p.goSafe("reaper", func() { reaper.Reap(ctx) })

	for _, err := range MountBase() {
		p.problem("%v", err)
	}
	b := &Boot{Reaper: reaper, Control: p, Log: p.base, RunDir: "/run/kiln", StateDir: "/data/state", LogDir: "/data/log", ConfigDir: "/data/config"}
	if err := os.MkdirAll(b.RunDir, 0o755); err != nil {
		p.problem("creating %s: %v", b.RunDir, err)
	}
	b.Slot = cmdlineParam("kiln.slot")

	b.Modules = p.modules(ctx)
	b.LiveID = cmdlineParam("kiln.live")
	b.Live = b.LiveID != ""
	var disk string
	var err error
	if !b.Live {
		if disk, err = RootDisk(); err != nil {
			p.problem("finding the boot disk: %v; the data partition and ESP cannot be mounted", err)
		}
	}
	var mounted []string
	if b.Live {
		if err := unix.Mount("tmpfs", "/data", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
			b.DataErr = fmt.Errorf("mounting a tmpfs on /data for the live system: %w", err)
			p.problem("%v", b.DataErr)
		} else {
			mounted = append(mounted, "/data")
			if err := datapart.MakeDirs("/data"); err != nil {
				p.problem("%v", err)
			}
			fmt.Fprintln(p.o.Out, "kiln-init: LIVE system (from the ISO): state is kept in memory and lost at power-off; the recovery menu installs kiln to a disk")
		}
	} else if disk != "" {
		b.DataPart = &datapart.Manager{Disk: disk, Sys: sysDefault(), Runner: reaper, Out: p.o.Out, Log: p.base}
		p.mu.Lock()
		p.dataPart = b.DataPart
		p.mu.Unlock()
		b.Data, b.DataErr = b.DataPart.Setup(ctx)
		switch {
		case b.DataErr == nil:
			mounted = append(mounted, "/data")
			p.log.Info("data partition mounted", "device", b.Data.Device, "formatted", b.Data.Formatted, "grew_bytes", b.Data.GrewBy)
			full := p.checkDataSpace("/data", datapart.HostStatfs, false)
			p.goSafe("data space", func() {
				t := time.NewTicker(time.Minute)
				defer t.Stop()
				p.watchDataSpace(ctx, "/data", datapart.HostStatfs, t.C, full)
			})
		case errors.Is(b.DataErr, datapart.ErrRebootRequired):
			p.problem("%v", b.DataErr)
			fmt.Fprintln(p.o.Out, "kiln-init: rebooting in 5 s so the repaired file system is used")
			time.Sleep(5 * time.Second)
			p.request(shutdown.Reboot)
		default:
			p.problem("%v", b.DataErr)
		}
		if err := MountESP(b.Modules, disk); err != nil {
			p.problem("%v (boot entries and updates are unavailable)", err)
		} else {
			mounted = append(mounted, "/boot/efi")
		}
	} else {
		b.DataErr = errors.New("boot disk unknown")
	}
	if b.DataErr != nil && p.o.StartServicesWithoutData {
		if err := unix.Mount("tmpfs", "/data", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err == nil {
			mounted = append(mounted, "/data")
			if err := datapart.MakeDirs("/data"); err != nil {
				p.problem("%v", err)
			}
			p.problem("services run on a temporary /data: nothing they store survives a reboot")
		}
	}

	configPaths := []string{"/data/config/kiln.yaml", "/etc/kiln/kiln.yaml"}
	if fw := p.fwCfg(b); fw != "" {
		configPaths = append([]string{fw}, configPaths...)
	}
	b.Config, b.ConfigPath, err = LoadConfig(configPaths...)
	if err != nil {
		p.problem("%v", err)
	}
	if err := unix.Sethostname([]byte(b.Config.Hostname)); err != nil {
		p.problem("setting host name %q: %v", b.Config.Hostname, err)
	}
	p.mu.Lock()
	p.mounted = mounted
	p.mu.Unlock()
	if b.Config.Network.Configured() {
		// The netconf service configures the listed interfaces and the
		// firewall; until it runs only loopback is up.
		if err := bootnet.LoopbackUp(); err != nil {
			p.problem("%v", err)
		}
	} else {
		p.goSafe("network", func() {
			bootnet.Run(ctx, bootnet.Config{Hostname: b.Config.Hostname, Log: p.base})
		})
	}

	var sup Supervisor
	if p.o.NewSupervisor != nil && (b.DataErr == nil || p.o.StartServicesWithoutData) {
		p.mu.Lock()
		b.Problems = append([]string(nil), p.problems...)
		p.mu.Unlock()
		sup, err = p.o.NewSupervisor(b)
		if err == nil {
			err = sup.Start()
		}
		if err != nil {
			p.problem("starting the services: %v; none run", err)
			sup = nil
		}
	} else if p.o.NewSupervisor != nil {
		p.problem("services are not started because the data partition is not mounted; use the recovery console (serial or screen) to repair or format it, then reboot")
	}
	health := func() error { return nil }
	if sup != nil {
		p.mu.Lock()
		p.sup = sup
		p.mu.Unlock()
		health = func() error {
			if p.stopping.Load() {
				return nil
			}
			return sup.Healthy()
		}
	}
	wd := p.watchdog(ctx, health)
	p.goSafe("power button", func() {
		powerbutton.Watch(ctx, "/sys/class/input", "/dev", 2*time.Second, func() {
			p.log.Info("power button pressed")
			p.request(shutdown.Poweroff)
		}, p.base)
	})

	p.mu.Lock()
	b.Problems = append([]string(nil), p.problems...)
	p.mu.Unlock()
	p.startConsoles(ctx, b)
	afterCtx, afterCancel := context.WithCancel(ctx)
	if p.o.AfterStart != nil {
		p.goSafe("after start", func() { p.o.AfterStart(afterCtx, b) })
	}

	action := <-p.requests
	afterCancel()
	p.mu.Lock()
	mounted = append([]string(nil), p.mounted...)
	p.mu.Unlock()
	plan := shutdown.Plan{
		Out:             p.o.Out,
		StopServices:    p.stopServices,
		ServiceDeadline: p.o.ServiceStopDeadline,
		Unmount:         reverse(mounted),
		Sys:             shutdown.Linux{},
		Log:             p.base,
	}
	if wd != nil {
		plan.Disarm = func() error {
			cancel() // stop the petting goroutine first
			return wd.Disarm()
		}
	}
	return plan.Run(context.WithoutCancel(ctx), action)
}

// checkDataSpace reports a problem when the data partition mounted at
// mountpoint has just become full (wasFull is the previous result) and
// returns whether it is full now. It never changes the partition.
func (p *Init) checkDataSpace(mountpoint string, statfs datapart.Statfs, wasFull bool) bool {
	sp, err := statfs(mountpoint)
	if err != nil {
		p.log.Warn("checking data partition space", "err", err)
		return wasFull
	}
	full := sp.Full()
	switch {
	case full && !wasFull:
		p.problem("%s", sp.FullProblem(mountpoint))
	case !full && wasFull:
		p.log.Info("data partition has room again", "free_mib", sp.Free>>20, "total_mib", sp.Total>>20)
	}
	return full
}

// watchDataSpace re-checks the data partition's space on every tick until
// ctx ends, reporting each time it becomes full.
func (p *Init) watchDataSpace(ctx context.Context, mountpoint string, statfs datapart.Statfs, tick <-chan time.Time, full bool) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			full = p.checkDataSpace(mountpoint, statfs, full)
		}
	}
}

// modules reads the module index, loads modules for present devices and
// keeps loading them for new ones.
func (p *Init) modules(ctx context.Context) *kmod.Loader {
	l, err := kmod.NewLoader(kmod.Options{Logger: p.base})
	if err != nil {
		p.problem("no kernel module index: %v; only built-in drivers work", err)
		return nil
	}
	sock, err := coldplug.Subscribe()
	if err != nil {
		p.log.Warn("no hotplug events; devices added later get no modules", "err", err)
	} else {
		p.goSafe("hotplug", func() { coldplug.Listen(ctx, sock, "/sys/devices", l, p.base.With("component", "coldplug")) })
	}
	start := time.Now()
	mods, err := coldplug.Settle(ctx, "/sys/devices", l, p.base.With("component", "coldplug"), 6, 200*time.Millisecond)
	if err != nil {
		p.problem("loading modules for devices: %v", err)
	}
	// Handlers no device alias names: input events for the power button.
	for _, m := range []string{"evdev", "button"} {
		if err := l.Load(m, ""); err != nil && !errors.Is(err, kmod.ErrNotFound) {
			p.log.Warn("loading module", "module", m, "err", err)
		}
	}
	p.log.Info("modules loaded for devices", "count", len(mods), "took", time.Since(start).Round(time.Millisecond))
	return l
}

// fwCfg copies the files a QEMU VM was given with -fw_cfg name=opt/kiln/<name>
// to <run>/fw_cfg (see fwcfg.go) and returns the config's path there, or "".
func (p *Init) fwCfg(b *Boot) string {
	if !isQEMU("/sys/class/dmi/id/sys_vendor") {
		return ""
	}
	if b.Modules != nil {
		if err := b.Modules.Load("qemu_fw_cfg", ""); err != nil && !errors.Is(err, kmod.ErrNotFound) {
			p.log.Warn("loading module", "module", "qemu_fw_cfg", "err", err)
		}
	}
	dir := filepath.Join(b.RunDir, "fw_cfg")
	names, err := CopyFwCfg(FwCfgSysDir, dir)
	if err != nil {
		p.problem("%v", err)
	}
	if len(names) == 0 {
		return ""
	}
	p.log.Info("files from QEMU fw_cfg", "names", names, "dir", dir)
	if slices.Contains(names, FwCfgConfigName) {
		return filepath.Join(dir, FwCfgConfigName)
	}
	return ""
}

// watchdog opens the hardware watchdog if there is one and pets it while healthy.
func (p *Init) watchdog(ctx context.Context, health func() error) *watchdog.Device {
	const dev = "/dev/watchdog"
	// The driver may have just been loaded; give devtmpfs a moment.
	for i := 0; i < 20; i++ {
		if _, err := os.Stat(dev); err == nil {
			break
		}
		if _, err := os.Stat("/sys/class/watchdog"); err != nil {
			break // no watchdog driver at all
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(dev); err != nil {
		p.log.Info("no hardware watchdog")
		return nil
	}
	wd, err := watchdog.Open(dev, p.o.WatchdogTimeout)
	if wd == nil {
		p.problem("opening the hardware watchdog: %v", err)
		return nil
	}
	if err != nil {
		p.log.Warn("watchdog", "err", err)
	}
	p.log.Info("hardware watchdog armed", "timeout", p.o.WatchdogTimeout)
	p.goSafe("watchdog", func() {
		t := time.NewTicker(p.o.WatchdogTimeout / 3)
		defer t.Stop()
		watchdog.Keep(ctx, wd, health, t.C, p.base)
	})
	return wd
}

// startConsoles runs the recovery console on every terminal that exists,
// restarting it whenever it returns.
func (p *Init) startConsoles(ctx context.Context, b *Boot) {
	if p.o.Console == nil {
		return
	}
	for _, tty := range p.o.ConsoleTTYs {
		if _, err := os.Stat(tty); err != nil {
			continue
		}
		p.goSafe("console "+tty, func() {
			for ctx.Err() == nil {
				if err := p.o.Console(ctx, tty, b); err != nil && ctx.Err() == nil {
					p.log.Warn("recovery console ended; restarting", "tty", tty, "err", err)
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		})
	}
}

func reverse(s []string) []string {
	r := make([]string, len(s))
	for i, v := range s {
		r[len(s)-1-i] = v
	}
	return r
}
