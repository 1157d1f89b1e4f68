package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/init/bootnet"
	"kiln.dev/kiln/init/coldplug"
	"kiln.dev/kiln/init/kmod"
	"kiln.dev/kiln/init/reap"
	"kiln.dev/kiln/init/shutdown"
	"kiln.dev/kiln/services/vetting/agent"
	"kiln.dev/kiln/services/vetting/agent/sshhold"
)

// liveMain runs kiln-agent as PID 1 of the live image. It never returns:
// PID 1 exiting panics the kernel.
func liveMain(version string) {
	out := &consoles{fallback: os.Stdout}
	// No timestamps: console lines stay short, and the serial log has its own.
	level := new(slog.LevelVar)
	base := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	log := base.With("component", "vetting-agent")
	ctx := context.Background()
	// The init packages and sshhold add their own component.
	reaper := reap.New(base)
	go reaper.Reap(ctx)
	l := &live{sys: &liveLinux{log: base}, out: out, log: log, level: level, cfg: defaultLiveConfig(), sleep: sleepCtx,
		runAgent: agent.Run, version: version}
	l.hold = func(server string, holding func(addr, hostKey string)) func(context.Context, agent.HoldRequest) error {
		return sshhold.Hold(sshhold.HoldOptions{Listen: l.cfg.HoldListen, ServerURL: server, Holding: holding,
			Runner: reaper, Logger: base})
	}
	after, delay := l.run(ctx)
	err := l.finish(ctx, after, delay)
	l.printf("cannot %s: %v; switch the machine off by hand", after, err)
	select {}
}

// liveLinux is the running kernel.
type liveLinux struct {
	// log has no component: the init packages add theirs.
	log *slog.Logger
}

type mount struct {
	src, target, fstype string
	flags               uintptr
	data                string
}

// liveMounts are what the agent, its SSH sessions and DHCP need, in order.
var liveMounts = []mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "mode=0620,ptmxmode=0666"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
}

// Mount implements liveSys.
func (liveLinux) Mount() []error {
	var errs []error
	for _, m := range liveMounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("creating %s: %w", m.target, err))
			continue
		}
		if err := unix.Mount(m.src, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mounting %s at %s: %w", m.fstype, m.target, err))
		}
	}
	for link, target := range map[string]string{"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"} {
		_ = os.Symlink(target, link)
	}
	ensureConsole()
	return errs
}

// Cmdline implements liveSys.
func (liveLinux) Cmdline() string {
	b, _ := os.ReadFile("/proc/cmdline")
	return string(b)
}

// Drivers implements liveSys: coldplug until a pass loads nothing, then
// uevents for devices that appear later.
func (s liveLinux) Drivers(ctx context.Context) ([]string, error) {
	loader, err := kmod.NewLoader(kmod.Options{Logger: s.log})
	if err != nil {
		return nil, fmt.Errorf("reading the module index: %w", err)
	}
	// Subscribe first, so that no device falls between the scan and the
	// listener.
	log := s.log.With("component", "coldplug")
	sock, serr := coldplug.Subscribe()
	mods, err := coldplug.Settle(ctx, "/sys/devices", loader, log, 8, 250*time.Millisecond)
	if serr != nil {
		log.Warn("no hotplug: devices that appear later get no driver", "error", serr)
	} else {
		go func() {
			if err := coldplug.Listen(ctx, sock, "/sys/devices", loader, log); err != nil {
				log.Warn("hotplug stopped", "error", err)
			}
		}()
	}
	return mods, err
}

// NICs implements liveSys.
func (liveLinux) NICs() []string { return bootnet.EthernetNICs("/sys/class/net") }

// Network implements liveSys.
func (s liveLinux) Network(ctx context.Context, hostname string) {
	if err := unix.Sethostname([]byte(hostname)); err != nil {
		s.log.Warn("setting the host name", "component", "vetting-agent", "error", err)
	}
	if err := bootnet.Run(ctx, bootnet.Config{Hostname: hostname, Log: s.log}); err != nil {
		s.log.Error("network", "component", "bootnet", "error", err)
	}
}

// Addrs implements liveSys.
func (s liveLinux) Addrs() map[string][]string {
	out := map[string][]string{}
	for _, name := range s.NICs() {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				ones, _ := n.Mask.Size()
				out[name] = append(out[name], fmt.Sprintf("%s/%d", n.IP, ones))
			}
		}
	}
	return out
}

// RandomReady implements liveSys: a non-blocking getrandom succeeds once
// the pool is seeded.
func (liveLinux) RandomReady() bool {
	var b [1]byte
	_, err := unix.Getrandom(b[:], unix.GRND_NONBLOCK)
	return err == nil
}

// Halt implements liveSys: SIGTERM to everything else (SSH sessions), then
// SIGKILL after 3 s, sync, reboot(2).
func (liveLinux) Halt(action string) error {
	sys := shutdown.Linux{}
	_ = sys.KillAll(syscall.SIGTERM)
	for i := 0; i < 30; i++ {
		if n, err := sys.Others(); err != nil || n == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = sys.KillAll(syscall.SIGKILL)
	sys.Sync()
	a := shutdown.Poweroff
	if action == "reboot" {
		a = shutdown.Reboot
	}
	return sys.Halt(a)
}

// ensureConsole attaches stdin/stdout/stderr to /dev/console when the kernel
// could not (no /dev/console node when it started /init).
func ensureConsole() {
	var st unix.Stat_t
	if unix.Fstat(1, &st) == nil {
		return
	}
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
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

// consoles writes to every active kernel console (console=tty0
// console=ttyS0 → the screen and the serial port), not only to
// /dev/console (the last one): an operator in front of the machine sees
// the markers too. The devices are opened at the first write, after /dev
// and /sys are mounted.
type consoles struct {
	fallback io.Writer
	once     sync.Once

	// mu serializes writes to ws (lines from several goroutines).
	mu sync.Mutex
	ws []io.Writer
}

func (c *consoles) Write(p []byte) (int, error) {
	c.once.Do(c.open)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.ws {
		_, _ = w.Write(p)
	}
	return len(p), nil
}

func (c *consoles) open() {
	b, _ := os.ReadFile("/sys/class/tty/console/active")
	for _, name := range strings.Fields(string(b)) {
		// Non-blocking open: a serial port without carrier must not block;
		// Go's poller handles the writes.
		f, err := os.OpenFile("/dev/"+name, os.O_WRONLY|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
		if err == nil {
			c.ws = append(c.ws, f)
		}
	}
	if len(c.ws) == 0 {
		c.ws = []io.Writer{c.fallback}
	}
}
