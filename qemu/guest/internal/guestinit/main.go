// Command guestinit is PID 1 of a qemu/guest test VM. It loads the boot
// modules from its initramfs with kiln's loader (init/kmod), mounts the
// host's / (9p, read-only) under a tmpfs overlay as the new root, mounts the
// kernel file systems and the read-write shares, switches root, binds the
// kernel's module tree, loads the job's modules with the host's modprobe
// (which also answers the kernel's request_module from then on), runs the
// job's command with its output on /dev/hvc0, writes the end marker and
// powers off.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/init/coldplug"
	"kiln.dev/kiln/init/kmod"
	"kiln.dev/kiln/qemu/guest/internal/job"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "guestinit is PID 1 of a qemu/guest VM; it does nothing elsewhere")
		os.Exit(2)
	}
	g := &guest{start: time.Now()}
	code, err := g.run()
	if err != nil {
		g.logf("error: %v", err)
		g.writeOut(job.ErrorLine(g.job.Nonce, err.Error()))
	} else {
		g.writeOut(job.ExitLine(g.job.Nonce, code))
	}
	g.shutdown()
}

type guest struct {
	start   time.Time
	console *os.File // /dev/console (the serial port): kernel and init messages
	out     *os.File // /dev/hvc0: the command's output and the marker
	job     job.Job
	shares  []string // mount points to unmount before power off
	phases  []string // "name duration" of each boot phase, for the ready line
	last    time.Time
}

// phase records how long the boot phase that just ended took.
func (g *guest) phase(name string) {
	if g.last.IsZero() {
		g.last = g.start
	}
	now := time.Now()
	g.phases = append(g.phases, name+" "+now.Sub(g.last).Round(time.Millisecond).String())
	g.last = now
}

func (g *guest) logf(format string, args ...any) {
	w := io.Writer(os.Stderr)
	if g.console != nil {
		w = g.console
	}
	fmt.Fprintf(w, "kiln-guest: "+format+"\n", args...)
}

// writeOut writes a marker line on a line of its own.
func (g *guest) writeOut(line string) {
	if g.out == nil || g.job.Nonce == "" {
		g.logf("%s", line)
		return
	}
	fmt.Fprintf(g.out, "\n%s\n", line)
	// Wait until the host has it: power off follows.
	unix.IoctlSetInt(int(g.out.Fd()), unix.TCSBRK, 1)
}

type mnt struct {
	src, target, fstype string
	flags               uintptr
	data                string
}

func mountAll(ms []mnt) error {
	for _, m := range ms {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", m.target, err)
		}
		if err := unix.Mount(m.src, m.target, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mounting %s at %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

func (g *guest) run() (int, error) {
	if err := mountAll([]mnt{
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	}); err != nil {
		return 0, err
	}
	if c, err := os.OpenFile("/dev/console", os.O_RDWR, 0); err == nil {
		g.console = c
		for fd := 0; fd <= 2; fd++ {
			unix.Dup2(int(c.Fd()), fd)
		}
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return 0, fmt.Errorf("reading kernel release: %w", err)
	}
	modDir := "/lib/modules/" + unix.ByteSliceToString(u.Release[:])
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ld, err := kmod.NewLoader(kmod.Options{Dir: modDir, Logger: quiet})
	if err != nil {
		return 0, fmt.Errorf("reading the initramfs module index: %w", err)
	}
	for _, m := range job.InitramfsModules {
		if err := ld.Load(m, ""); err != nil {
			return 0, fmt.Errorf("loading boot module: %w", err)
		}
	}
	g.phase("initramfs modules")
	if err := g.openOut(); err != nil {
		return 0, err
	}

	// The host's / read-only; with cache=loose the guest keeps what it read.
	if err := mountAll([]mnt{{job.RootTag, "/host", "9p", unix.MS_RDONLY,
		"trans=virtio,version=9p2000.L,msize=524288,cache=loose,access=client"}}); err != nil {
		return 0, fmt.Errorf("%w (is the host's / exported with mount tag %s?)", err, job.RootTag)
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return 0, fmt.Errorf("reading the kernel command line: %w", err)
	}
	jobPath, err := job.FromCmdline(string(cmdline))
	if err != nil {
		return 0, err
	}
	if g.job, err = job.Read("/host" + jobPath); err != nil {
		return 0, err
	}
	if err := g.mountRoot(); err != nil {
		return 0, err
	}
	if err := g.switchRoot(modDir, g.job.ModuleTree); err != nil {
		return 0, err
	}
	g.phase("root")

	if err := os.WriteFile("/proc/sys/kernel/modprobe", []byte(g.job.Modprobe), 0); err != nil {
		return 0, fmt.Errorf("setting the kernel's modprobe: %w", err)
	}
	if err := modprobe(g.job.Modprobe, job.RootModules); err != nil {
		return 0, fmt.Errorf("loading the guest's own modules: %w", err)
	}
	if err := mountAll([]mnt{{"configfs", "/sys/kernel/config", "configfs", 0, ""}}); err != nil {
		return 0, err
	}
	g.phase("root modules")
	if err := modprobe(g.job.Modprobe, g.job.Modules); err != nil {
		return 0, fmt.Errorf("loading Options.Modules: %w", err)
	}
	g.phase("Options.Modules")
	if _, err := os.Stat("/sys/module/nfsd"); err == nil {
		// What Debian's proc-fs-nfsd.mount does on a server.
		if err := mountAll([]mnt{{"nfsd", "/proc/fs/nfsd", "nfsd", 0, ""}}); err != nil {
			return 0, err
		}
	}
	if err := setupNetwork(); err != nil {
		return 0, err
	}
	if err := os.Chdir(g.job.Dir); err != nil {
		return 0, fmt.Errorf("entering the test's directory: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := g.hotplug(ctx); err != nil {
		return 0, fmt.Errorf("following hotplugged devices: %w", err)
	}
	g.logf("ready after %v (%s)", time.Since(g.start).Round(time.Millisecond), strings.Join(g.phases, ", "))
	return g.exec()
}

// openOut opens the first virtio console in raw mode (no CR added, no
// echo). Its device node appears once the host has announced the port.
func (g *guest) openOut() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := os.OpenFile(job.Console, os.O_RDWR|unix.O_NOCTTY, 0)
		if err == nil {
			t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
			if err != nil {
				return fmt.Errorf("reading %s settings: %w", job.Console, err)
			}
			t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
			t.Oflag &^= unix.OPOST
			t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
			t.Cflag = t.Cflag&^(unix.CSIZE|unix.PARENB) | unix.CS8
			if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t); err != nil {
				return fmt.Errorf("setting %s raw: %w", job.Console, err)
			}
			g.out = f
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("opening the output console: %w (is a virtconsole attached?)", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mountRoot builds the new root at /newroot: the host's / under a tmpfs
// overlay (every write stays in the guest's memory), with fresh kernel file
// systems, an empty /run, and the shares mounted read-write over it.
func (g *guest) mountRoot() error {
	if err := mountAll([]mnt{{"tmpfs", "/rw", "tmpfs", 0, "mode=0755"}}); err != nil {
		return err
	}
	for _, d := range []string{"/rw/upper", "/rw/work"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("creating the overlay's %s: %w", d, err)
		}
	}
	if err := mountAll([]mnt{{"overlay", "/newroot", "overlay", 0,
		"lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work"}}); err != nil {
		return err
	}
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		if err := unix.Mount(d, "/newroot"+d, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("moving %s into the new root: %w", d, err)
		}
	}
	if err := mountAll([]mnt{
		{"devpts", "/newroot/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
		{"tmpfs", "/newroot/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/newroot/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
		{"cgroup2", "/newroot/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	}); err != nil {
		return err
	}
	for _, d := range []string{"/newroot/run/lock"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	if err := g.mountTmp(); err != nil {
		return err
	}
	// Parents before the directories inside them.
	shares := slices.Clone(g.job.Shares)
	slices.SortFunc(shares, func(a, b job.Share) int { return strings.Compare(a.Path, b.Path) })
	for _, s := range shares {
		// cache=mmap: writes reach the host at once, mmap still works.
		if err := mountAll([]mnt{{s.Tag, "/newroot" + s.Path, "9p", 0,
			"trans=virtio,version=9p2000.L,msize=524288,cache=mmap,access=client"}}); err != nil {
			return fmt.Errorf("mounting shared directory %s: %w", s.Path, err)
		}
		g.shares = append(g.shares, s.Path)
	}
	return nil
}

// mountTmp puts a fresh tmpfs on /tmp: the overlay cannot be exported over
// NFS (9p has no file handles) and tmpfs can, so t.TempDir() inside the
// guest works as an export or a LIO backing store. What the job needs from
// the host's /tmp — the test binary's directory (go test builds there), the
// working directory, the module tree — stays visible, bound from the overlay.
func (g *guest) mountTmp() error {
	var keep []string
	for _, p := range []string{filepath.Dir(g.job.Args[0]), g.job.Dir, g.job.ModuleTree} {
		if rel, err := filepath.Rel("/tmp", p); err == nil && rel != "." && !strings.HasPrefix(rel, "..") && !slices.Contains(keep, p) {
			keep = append(keep, p)
		}
	}
	slices.Sort(keep) // parents first
	fds := make([]int, len(keep))
	for i, p := range keep {
		fd, err := unix.Open("/newroot"+p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening %s before covering /tmp: %w", p, err)
		}
		defer unix.Close(fd)
		fds[i] = fd
	}
	if err := mountAll([]mnt{{"tmpfs", "/newroot/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"}}); err != nil {
		return err
	}
	for i, p := range keep {
		if err := os.MkdirAll("/newroot"+p, 0o755); err != nil {
			return fmt.Errorf("creating %s in the guest's /tmp: %w", p, err)
		}
		if err := unix.Mount(fmt.Sprintf("/newroot/proc/self/fd/%d", fds[i]), "/newroot"+p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding %s into the guest's /tmp: %w", p, err)
		}
	}
	return nil
}

// switchRoot makes /newroot the root and binds the kernel's module tree (a
// host directory seen through the 9p root) at modDir.
func (g *guest) switchRoot(modDir, tree string) error {
	if err := os.Chdir("/newroot"); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving the new root onto /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("entering the new root: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	// The host may have no /lib/modules; the overlay makes one.
	if err := os.MkdirAll(modDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", modDir, err)
	}
	if err := unix.Mount(tree, modDir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("binding the modules at %s: %w", modDir, err)
	}
	return nil
}

// modprobe loads modules with their dependencies and soft dependencies
// using kmod's modprobe (its binary indexes answer in a third of the time
// kiln's text index needs under TCG, see the package doc of qemu/guest).
func modprobe(path string, modules []string) error {
	if len(modules) == 0 {
		return nil
	}
	out, err := exec.Command(path, append([]string{"-a", "--"}, modules...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -a %s: %v: %s", path, strings.Join(modules, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setupNetwork brings up lo and names the guest; there are no NICs.
func setupNetwork() error {
	if err := unix.Sethostname([]byte("kiln-guest")); err != nil {
		return fmt.Errorf("setting the hostname: %w", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening a socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("reading lo's flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing up lo: %w", err)
	}
	return nil
}

// exec runs the job's command in its own session with its output on the
// output console, reaps every orphan meanwhile (this is PID 1) and returns
// the command's exit status.
func (g *guest) exec() (int, error) {
	null, err := os.Open("/dev/null")
	if err != nil {
		return 0, err
	}
	defer null.Close()
	pid, err := syscall.ForkExec(g.job.Args[0], g.job.Args, &syscall.ProcAttr{
		Dir:   g.job.Dir,
		Env:   g.job.Env,
		Files: []uintptr{null.Fd(), g.out.Fd(), g.out.Fd()},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return 0, fmt.Errorf("starting %s: %w", g.job.Args[0], err)
	}
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, unix.SIGCHLD)
	defer signal.Stop(sigchld)
	for {
		reapMu.Lock()
		for {
			var ws unix.WaitStatus
			p, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || p <= 0 {
				break
			}
			if p != pid || !(ws.Exited() || ws.Signaled()) {
				continue // an orphan, or a stop
			}
			reapMu.Unlock()
			if ws.Signaled() {
				g.logf("test process killed by %v", ws.Signal())
				return 128 + int(ws.Signal()), nil
			}
			return ws.ExitStatus(), nil
		}
		reapMu.Unlock()
		select {
		case <-sigchld:
		case <-time.After(time.Second):
		}
	}
}

// reapMu is held while PID 1 runs a child it waits for itself (modprobe for
// a hotplugged device), so that the reaper does not take its exit status.
var reapMu sync.Mutex

// hotplug loads the modules of devices that appear while the test runs, as
// udev would (an iSCSI login's disk needs sd_mod, for one), until ctx ends.
func (g *guest) hotplug(ctx context.Context) error {
	sock, err := coldplug.Subscribe()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(g.console, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "kiln-guest hotplug")
	go coldplug.Listen(ctx, sock, "/sys/devices", aliasModprobe{g.job.Modprobe}, log)
	return nil
}

// aliasModprobe loads a device's modules with kmod's modprobe.
type aliasModprobe struct{ path string }

func (m aliasModprobe) LoadAlias(modalias string) ([]string, error) {
	reapMu.Lock()
	defer reapMu.Unlock()
	out, err := exec.Command(m.path, "-q", "--", modalias).CombinedOutput()
	if err != nil && len(bytes.TrimSpace(out)) > 0 { // a quiet failure is "no module for it"
		return nil, fmt.Errorf("%s -q %s: %v: %s", m.path, modalias, err, bytes.TrimSpace(out))
	}
	return nil, nil
}

// shutdown stops what the test left running, unmounts the shares so every
// write has reached the host, and powers off.
func (g *guest) shutdown() {
	unix.Kill(-1, unix.SIGKILL)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); err == unix.ECHILD {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := len(g.shares) - 1; i >= 0; i-- {
		if err := unix.Unmount(g.shares[i], 0); err != nil {
			unix.Unmount(g.shares[i], unix.MNT_DETACH)
		}
	}
	unix.Sync()
	if g.out != nil {
		g.out.Close()
	}
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		g.logf("power off: %v", err)
	}
	for {
		time.Sleep(time.Hour)
	}
}
