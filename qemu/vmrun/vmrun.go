package vmrun

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/qemu"
)

// Options are kiln vm run's flags (see its -h).
type Options struct {
	Image           string
	NoImage         bool
	State           string
	Snapshot        bool
	Fresh           bool
	DiskSize        string
	Mem, CPUs       int
	HTTPSPort       int
	HTTPPort        int
	NICs            []qemu.NIC
	Firmware        string
	Outbound        bool
	ReadyTimeout    time.Duration
	ShutdownTimeout time.Duration
	// config is an appliance config handed to the guest through fw_cfg.
	Config string
	// targets is the number of vetting target VMs (see targets.go).
	Targets int
}

// Run boots the VM of o with the serial console on in/out (a terminal in
// is put in raw mode; Ctrl-A escapes control QEMU), messages on errOut,
// until QEMU exits, Ctrl-A x, or ctx ends (then the guest gets a power
// button press and o.ShutdownTimeout to power off).
func Run(ctx context.Context, o Options, in io.Reader, out, errOut io.Writer) error {
	if err := os.MkdirAll(o.State, 0o755); err != nil {
		return fmt.Errorf("vm run: creating --state %s: %w", o.State, err)
	}
	cfg := qemu.Config{
		WorkDir:   o.State,
		Firmware:  qemu.Firmware(o.Firmware),
		MemoryMiB: o.Mem,
		CPUs:      o.CPUs,
		NICs:      o.NICs,
	}
	if o.HTTPSPort != -1 || o.HTTPPort != -1 {
		cfg.Mgmt = &qemu.Mgmt{HTTPSPort: o.HTTPSPort, HTTPPort: o.HTTPPort, Outbound: o.Outbound}
	}
	if err := qemu.Available(cfg); err != nil {
		return fmt.Errorf("vm run: %w", err)
	}
	var targets []qemu.Target
	if o.Targets > 0 {
		var nic qemu.NIC
		var err error
		if cfg.FwCfg, nic, targets, err = prepareTargets(o); err != nil {
			return fmt.Errorf("vm run: %w", err)
		}
		cfg.NICs = append(cfg.NICs, nic)
	} else if o.Config != "" {
		abs, err := filepath.Abs(o.Config)
		if err != nil {
			return fmt.Errorf("vm run: --config: %w", err)
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("vm run: --config: %w", err)
		}
		cfg.FwCfg = []qemu.FwCfg{{Name: "opt/kiln/config", File: abs}}
	}
	if !o.NoImage {
		disk, cleanup, err := prepareDisk(ctx, o, errOut)
		if err != nil {
			return fmt.Errorf("vm run: %w", err)
		}
		defer cleanup()
		cfg.Disks = []qemu.Disk{{Path: disk, Format: "qcow2"}}
	}

	var restore func()
	if f, ok := in.(*os.File); ok {
		if r, err := makeRaw(int(f.Fd())); err == nil {
			restore = r
			defer restore()
		}
	}
	nl := "\n"
	if restore != nil {
		nl = "\r\n" // raw mode: no output post-processing
	}
	say := func(format string, a ...any) {
		fmt.Fprintf(errOut, "%s[kiln vm] %s%s", nl, strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", nl), nl)
	}

	logger := slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "vm")
	// The VM outlives ctx: on SIGINT/SIGTERM the guest gets a power button
	// press and time to shut down cleanly.
	// A terminal answers the guest's cursor queries itself; without one, the
	// launcher does, so line editors on the console do not stall.
	opts := qemu.Options{Logger: logger, Console: out, AnswerCursorQueries: restore == nil}
	vm, err := qemu.Start(context.WithoutCancel(ctx), cfg, opts)
	if err != nil {
		return fmt.Errorf("vm run: %w", err)
	}
	defer vm.Close()
	what := o.Image
	if o.NoImage {
		what = "no disk"
	}
	say("booting %s in QEMU (TCG, %s); serial log %s\nCtrl-A x quits, Ctrl-A p presses the power button, Ctrl-A h help",
		what, o.Firmware, filepath.Join(o.State, "serial.log"))
	var ts *vmTargets
	if len(targets) > 0 {
		ts = newVMTargets(targets, logger, say)
		defer ts.close()
		var lines []string
		for i, tg := range targets {
			lines = append(lines, fmt.Sprintf("  %s  %s  %s  serial log %s", targetName(i+1), tg.NIC.MAC, targetAddr(i+1),
				filepath.Join(tg.Dir, "serial.log")))
		}
		say("%d vetting target(s) on a private segment (subnet %s on the appliance's %s, config and hosts file in %s);\n"+
			"they power on once the appliance is ready:\n%s", len(targets), targetsPrefix, targetsIface,
			filepath.Dir(targets[0].Dir), strings.Join(lines, "\n"))
	}

	go func() {
		rctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
		defer cancel()
		if _, err := vm.Expect(rctx, regexp.MustCompile(`^kiln: ready$`), o.ReadyTimeout); err != nil {
			return
		}
		var urls []string
		if p := vm.HTTPSPort(); p > 0 {
			urls = append(urls, fmt.Sprintf("https://localhost:%d/healthz", p))
		}
		if p := vm.HTTPPort(); p > 0 {
			urls = append(urls, fmt.Sprintf("http://localhost:%d/healthz", p))
		}
		if len(urls) > 0 {
			say("ready: %s", strings.Join(urls, "  "))
		} else {
			say("ready")
		}
		if ts != nil {
			if p := vm.HTTPSPort(); p > 0 {
				say("watch the vetting in the web UI: https://localhost:%d/ (user admin, the password is on the console above)", p)
			}
			ts.powerOn(ctx)
		}
	}()

	quit := make(chan string, 1)
	var powerOnTargets func()
	if ts != nil {
		powerOnTargets = func() { ts.powerOn(ctx) }
	}
	go relayInput(ctx, in, vm, quit, say, powerOnTargets)

	select {
	case <-vm.Exited():
	case why := <-quit:
		say("%s", why)
		vm.Close()
		return nil
	case <-ctx.Done():
		say("pressing the power button; waiting up to %v for the guest to power off", o.ShutdownTimeout)
		sctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
		err := vm.Shutdown(sctx)
		cancel()
		if err != nil {
			say("the guest did not power off in time: QEMU stopped")
		}
		return nil
	}
	if err := vm.Wait(context.Background()); err != nil {
		return fmt.Errorf("vm run: QEMU: %v: %s", err, strings.TrimSpace(vm.Stderr()))
	}
	return nil
}

// relayInput copies the terminal to the serial console and handles the Ctrl-A
// escapes; powerOnTargets (Ctrl-A t) is nil without targets.
func relayInput(ctx context.Context, in io.Reader, vm *qemu.VM, quit chan<- string, say func(string, ...any), powerOnTargets func()) {
	const ctrlA = 0x01
	buf := make([]byte, 1024)
	escaped := false
	for {
		n, err := in.Read(buf)
		var out []byte
		for _, b := range buf[:n] {
			if !escaped {
				if b == ctrlA {
					escaped = true
				} else {
					out = append(out, b)
				}
				continue
			}
			escaped = false
			switch b {
			case 'x', 'X':
				quit <- "Ctrl-A x: QEMU stopped"
				return
			case 'p', 'P':
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				if err := vm.Powerdown(pctx); err != nil {
					say("power button: %v", err)
				} else {
					say("power button pressed")
				}
				cancel()
			case 't', 'T':
				if powerOnTargets == nil {
					say("Ctrl-A t: no vetting targets (kiln vm run --targets N)")
				} else {
					go powerOnTargets()
				}
			case 'h', 'H', '?':
				help := "Ctrl-A x  stop QEMU now\nCtrl-A p  press the power button (orderly poweroff)\nCtrl-A a  send Ctrl-A"
				if powerOnTargets != nil {
					help += "\nCtrl-A t  power on the vetting targets that are off"
				}
				say("%s", help)
			case ctrlA, 'a':
				out = append(out, ctrlA)
			default:
				out = append(out, ctrlA, b)
			}
		}
		if len(out) > 0 {
			if _, werr := vm.Write(out); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// prepareDisk returns the overlay to boot: a throw-away one for --snapshot,
// else the persistent one in --state. When the image changed since that
// overlay was made (a qcow2 overlay on a changed base would be garbage), a new
// overlay takes the old one's data partition if the layouts agree, so the
// VM's data survives `make run` rebuilding the image; the old overlay is kept
// as disk.qcow2.old.
func prepareDisk(ctx context.Context, o Options, errOut io.Writer) (string, func(), error) {
	if _, err := os.Stat(o.Image); err != nil {
		return "", nil, fmt.Errorf("--image %s: %w (build it with `make image`)", o.Image, err)
	}
	if o.Snapshot {
		dir, err := os.MkdirTemp("", "kiln-vm-disk-")
		if err != nil {
			return "", nil, fmt.Errorf("creating snapshot dir: %w", err)
		}
		disk := filepath.Join(dir, "disk.qcow2")
		if err := qemu.CreateOverlay(ctx, o.Image, disk, o.DiskSize); err != nil {
			os.RemoveAll(dir)
			return "", nil, err
		}
		return disk, func() { os.RemoveAll(dir) }, nil
	}
	disk := filepath.Join(o.State, "disk.qcow2")
	stampPath := filepath.Join(o.State, "disk.base")
	stamp, err := baseStamp(o.Image)
	if err != nil {
		return "", nil, err
	}
	old, _ := os.ReadFile(stampPath)
	_, statErr := os.Stat(disk)
	switch {
	case statErr == nil && o.Fresh:
		os.Remove(disk)
	case statErr == nil && string(old) == stamp:
		return disk, func() {}, nil
	case statErr == nil:
		if err := carryOver(ctx, o.Image, disk, errOut); err != nil {
			return "", nil, err
		}
		if err := os.WriteFile(stampPath, []byte(stamp), 0o644); err != nil {
			return "", nil, fmt.Errorf("writing %s: %w", stampPath, err)
		}
		return disk, func() {}, nil
	}
	if err := qemu.CreateOverlay(ctx, o.Image, disk, o.DiskSize); err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(stampPath, []byte(stamp), 0o644); err != nil {
		return "", nil, fmt.Errorf("writing %s: %w", stampPath, err)
	}
	return disk, func() {}, nil
}

// carryOver replaces disk by an overlay on the changed image that keeps
// disk's data partition, or by a blank overlay when the layouts differ.
func carryOver(ctx context.Context, image, disk string, errOut io.Writer) error {
	info, err := qemu.Inspect(ctx, disk)
	if err != nil {
		return err
	}
	next := disk + ".new"
	os.Remove(next)
	if err := qemu.CreateOverlay(ctx, image, next, strconv.FormatInt(info.VirtualSize, 10)); err != nil {
		return err
	}
	err = qemu.CarryData(ctx, disk, next)
	switch {
	case err == nil:
		fmt.Fprintf(errOut, "[kiln vm] %s changed: booting it with the data partition of the previous disk (kept as %s.old)\n", image, disk)
	case errors.Is(err, qemu.ErrIncompatible):
		fmt.Fprintf(errOut, "[kiln vm] %s changed and its layout differs (%v): starting with a blank data partition; the previous disk is %s.old\n", image, err, disk)
		os.Remove(next)
		if err := qemu.CreateOverlay(ctx, image, next, strconv.FormatInt(info.VirtualSize, 10)); err != nil {
			return err
		}
	default:
		os.Remove(next)
		return fmt.Errorf("carrying the data partition over to the new image: %w", err)
	}
	if err := os.Rename(disk, disk+".old"); err != nil {
		return fmt.Errorf("keeping the previous disk: %w", err)
	}
	if err := os.Rename(next, disk); err != nil {
		return fmt.Errorf("installing the new disk: %w", err)
	}
	return nil
}

// baseStamp identifies the image an overlay was made on by its path and
// content, so a rebuild that produced the same bytes keeps the overlay.
func baseStamp(image string) (string, error) {
	abs, err := filepath.Abs(image)
	if err != nil {
		return "", err
	}
	f, err := os.Open(abs)
	if err != nil {
		return "", fmt.Errorf("--image %s: %w", image, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing --image %s: %w", image, err)
	}
	return fmt.Sprintf("%s\nsha256:%x\n", abs, h.Sum(nil)), nil
}

// makeRaw puts the terminal fd in raw mode and returns a function restoring it;
// it fails when fd is not a terminal.
func makeRaw(fd int) (func(), error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}
