package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
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

// runVM dispatches `kiln vm <subcommand>`.
func runVM(ctx context.Context, args []string, s stdio) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(s.out, "usage: kiln vm run [flags]   boot an image in QEMU (kiln vm run -h for flags)\n")
		if len(args) == 0 {
			return fmt.Errorf("vm: no subcommand given: %w", errUsage)
		}
		return nil
	}
	switch args[0] {
	case "run":
		return runVMRun(ctx, args[1:], s)
	}
	return fmt.Errorf("vm: unknown subcommand %q (want run): %w", args[0], errUsage)
}

// vmRunOptions are the parsed flags of `kiln vm run`.
type vmRunOptions struct {
	image           string
	noImage         bool
	state           string
	snapshot        bool
	fresh           bool
	diskSize        string
	mem, cpus       int
	httpsPort       int
	httpPort        int
	nics            []qemu.NIC
	firmware        string
	outbound        bool
	readyTimeout    time.Duration
	shutdownTimeout time.Duration
	// config is an appliance config handed to the guest through fw_cfg.
	config string
	// targets is the number of vetting target VMs (see vmtargets.go).
	targets int
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func parseVMRunFlags(args []string, errOut io.Writer) (vmRunOptions, error) {
	var o vmRunOptions
	var nics stringList
	fs := flag.NewFlagSet("kiln vm run", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() {
		fmt.Fprint(errOut, "usage: kiln vm run [flags]\n\n"+
			"Boots a kiln image in QEMU (TCG, OVMF) with the serial console on this terminal.\n"+
			"Writes go to a qcow2 overlay in --state, so the image is never modified and the\n"+
			"data partition survives restarts. Ctrl-A x quits QEMU, Ctrl-A p presses the\n"+
			"power button, Ctrl-A h shows these keys.\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.image, "image", "out/kiln.qcow2", "disk image to boot (qcow2 or raw); it is never written")
	fs.BoolVar(&o.noImage, "no-image", false, "boot without a disk (a network-boot target; use with --nic …,boot)")
	fs.StringVar(&o.state, "state", "out/vm", "VM directory: overlay disk.qcow2, OVMF vars, serial.log")
	fs.BoolVar(&o.snapshot, "snapshot", false, "use a throw-away overlay: nothing is kept after QEMU exits")
	fs.BoolVar(&o.fresh, "fresh", false, "replace the overlay in --state with a new one (erases the VM's data)")
	fs.StringVar(&o.diskSize, "disk-size", "2G", "virtual size of a new overlay; the data partition grows into it")
	fs.IntVar(&o.mem, "mem", 1024, "guest memory in MiB")
	fs.IntVar(&o.cpus, "cpus", 2, "vCPUs")
	fs.IntVar(&o.httpsPort, "https-port", 8443, "host port on 127.0.0.1 forwarded to the guest's 443 (0 picks one, -1 none)")
	fs.IntVar(&o.httpPort, "http-port", 8080, "host port on 127.0.0.1 forwarded to the guest's 80 (0 picks one, -1 none)")
	fs.Var(&nics, "nic", "extra NIC on a loopback L2 segment, repeatable: dgram:LPORT:RPORT[,mac=M][,model=e1000][,romfile=F][,boot] or mcast:GROUP:PORT[,…]")
	fs.StringVar(&o.firmware, "firmware", "uefi", "uefi (OVMF) or bios (SeaBIOS)")
	fs.BoolVar(&o.outbound, "outbound", false, "let the guest reach networks beyond this host over the management NIC")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 10*time.Minute, "how long to wait for \"kiln: ready\" before giving up on announcing the URL")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 60*time.Second, "on SIGINT/SIGTERM, how long the guest gets to power off before QEMU is stopped")
	fs.StringVar(&o.config, "config", "", "appliance config (YAML) passed to the guest through fw_cfg; it wins over the one on the image's data partition (with --targets: the base the targets' segment is added to; default the image's)")
	fs.IntVar(&o.targets, "targets", 0, fmt.Sprintf("vetting target VMs (0-%d) network-booting from the appliance on a private segment; each is vetted on its first boot", maxTargets))
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("vm run: %v: %w", err, errUsage)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("vm run: unexpected arguments %q: %w", fs.Args(), errUsage)
	}
	if o.firmware != string(qemu.UEFI) && o.firmware != string(qemu.BIOS) {
		return o, fmt.Errorf("vm run: --firmware %q: use uefi or bios: %w", o.firmware, errUsage)
	}
	if o.mem < 128 || o.cpus < 1 {
		return o, fmt.Errorf("vm run: --mem %d --cpus %d: need at least 128 MiB and 1 vCPU: %w", o.mem, o.cpus, errUsage)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"--https-port", o.httpsPort}, {"--http-port", o.httpPort}} {
		if p.v < -1 || p.v > 65535 {
			return o, fmt.Errorf("vm run: %s %d: use a port, 0 to pick one, or -1 for none: %w", p.name, p.v, errUsage)
		}
	}
	if o.targets < 0 || o.targets > maxTargets {
		return o, fmt.Errorf("vm run: --targets %d: use 0 (none) to %d (each target is a 2 GiB TCG guest): %w", o.targets, maxTargets, errUsage)
	}
	if o.targets > 0 && o.noImage {
		return o, fmt.Errorf("vm run: --targets needs the appliance image: drop --no-image: %w", errUsage)
	}
	for i, n := range nics {
		nic, err := qemu.ParseNIC(n, i)
		if err != nil {
			return o, fmt.Errorf("vm run: --nic: %v: %w", err, errUsage)
		}
		o.nics = append(o.nics, nic)
	}
	return o, nil
}

func runVMRun(ctx context.Context, args []string, s stdio) error {
	o, err := parseVMRunFlags(args, s.err)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.state, 0o755); err != nil {
		return fmt.Errorf("vm run: creating --state %s: %w", o.state, err)
	}
	cfg := qemu.Config{
		WorkDir:   o.state,
		Firmware:  qemu.Firmware(o.firmware),
		MemoryMiB: o.mem,
		CPUs:      o.cpus,
		NICs:      o.nics,
	}
	if o.httpsPort != -1 || o.httpPort != -1 {
		cfg.Mgmt = &qemu.Mgmt{HTTPSPort: o.httpsPort, HTTPPort: o.httpPort, Outbound: o.outbound}
	}
	if err := qemu.Available(cfg); err != nil {
		return fmt.Errorf("vm run: %w", err)
	}
	var targets []qemu.Target
	if o.targets > 0 {
		var nic qemu.NIC
		if cfg.FwCfg, nic, targets, err = prepareTargets(o); err != nil {
			return fmt.Errorf("vm run: %w", err)
		}
		cfg.NICs = append(cfg.NICs, nic)
	} else if o.config != "" {
		abs, err := filepath.Abs(o.config)
		if err != nil {
			return fmt.Errorf("vm run: --config: %w", err)
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("vm run: --config: %w", err)
		}
		cfg.FwCfg = []qemu.FwCfg{{Name: "opt/kiln/config", File: abs}}
	}
	if !o.noImage {
		disk, cleanup, err := prepareDisk(ctx, o, s.err)
		if err != nil {
			return fmt.Errorf("vm run: %w", err)
		}
		defer cleanup()
		cfg.Disks = []qemu.Disk{{Path: disk, Format: "qcow2"}}
	}

	var restore func()
	if f, ok := s.in.(*os.File); ok {
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
		fmt.Fprintf(s.err, "%s[kiln vm] %s%s", nl, strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", nl), nl)
	}

	logger := slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "vm")
	// The VM outlives ctx: on SIGINT/SIGTERM the guest gets a power button
	// press and time to shut down cleanly.
	// A terminal answers the guest's cursor queries itself; without one, the
	// launcher does, so line editors on the console do not stall.
	opts := qemu.Options{Logger: logger, Console: s.out, AnswerCursorQueries: restore == nil}
	vm, err := qemu.Start(context.WithoutCancel(ctx), cfg, opts)
	if err != nil {
		return fmt.Errorf("vm run: %w", err)
	}
	defer vm.Close()
	what := o.image
	if o.noImage {
		what = "no disk"
	}
	say("booting %s in QEMU (TCG, %s); serial log %s\nCtrl-A x quits, Ctrl-A p presses the power button, Ctrl-A h help",
		what, o.firmware, filepath.Join(o.state, "serial.log"))
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
		rctx, cancel := context.WithTimeout(ctx, o.readyTimeout)
		defer cancel()
		if _, err := vm.Expect(rctx, regexp.MustCompile(`^kiln: ready$`), o.readyTimeout); err != nil {
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
	go relayInput(ctx, s.in, vm, quit, say, powerOnTargets)

	select {
	case <-vm.Exited():
	case why := <-quit:
		say("%s", why)
		vm.Close()
		return nil
	case <-ctx.Done():
		say("pressing the power button; waiting up to %v for the guest to power off", o.shutdownTimeout)
		sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
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
func prepareDisk(ctx context.Context, o vmRunOptions, errOut io.Writer) (string, func(), error) {
	if _, err := os.Stat(o.image); err != nil {
		return "", nil, fmt.Errorf("--image %s: %w (build it with `make image`)", o.image, err)
	}
	if o.snapshot {
		dir, err := os.MkdirTemp("", "kiln-vm-disk-")
		if err != nil {
			return "", nil, fmt.Errorf("creating snapshot dir: %w", err)
		}
		disk := filepath.Join(dir, "disk.qcow2")
		if err := qemu.CreateOverlay(ctx, o.image, disk, o.diskSize); err != nil {
			os.RemoveAll(dir)
			return "", nil, err
		}
		return disk, func() { os.RemoveAll(dir) }, nil
	}
	disk := filepath.Join(o.state, "disk.qcow2")
	stampPath := filepath.Join(o.state, "disk.base")
	stamp, err := baseStamp(o.image)
	if err != nil {
		return "", nil, err
	}
	old, _ := os.ReadFile(stampPath)
	_, statErr := os.Stat(disk)
	switch {
	case statErr == nil && o.fresh:
		os.Remove(disk)
	case statErr == nil && string(old) == stamp:
		return disk, func() {}, nil
	case statErr == nil:
		if err := carryOver(ctx, o.image, disk, errOut); err != nil {
			return "", nil, err
		}
		if err := os.WriteFile(stampPath, []byte(stamp), 0o644); err != nil {
			return "", nil, fmt.Errorf("writing %s: %w", stampPath, err)
		}
		return disk, func() {}, nil
	}
	if err := qemu.CreateOverlay(ctx, o.image, disk, o.diskSize); err != nil {
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
