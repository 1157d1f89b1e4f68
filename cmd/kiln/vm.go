package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"kiln.dev/kiln/qemu"
	"kiln.dev/kiln/qemu/vmrun"
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

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func parseVMRunFlags(args []string, errOut io.Writer) (vmrun.Options, error) {
	var o vmrun.Options
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
	fs.StringVar(&o.Image, "image", "out/kiln.qcow2", "disk image to boot (qcow2 or raw); it is never written")
	fs.BoolVar(&o.NoImage, "no-image", false, "boot without a disk (a network-boot target; use with --nic …,boot)")
	fs.StringVar(&o.State, "state", "out/vm", "VM directory: overlay disk.qcow2, OVMF vars, serial.log")
	fs.BoolVar(&o.Snapshot, "snapshot", false, "use a throw-away overlay: nothing is kept after QEMU exits")
	fs.BoolVar(&o.Fresh, "fresh", false, "replace the overlay in --state with a new one (erases the VM's data)")
	fs.StringVar(&o.DiskSize, "disk-size", "2G", "virtual size of a new overlay; the data partition grows into it")
	fs.IntVar(&o.Mem, "mem", 1024, "guest memory in MiB")
	fs.IntVar(&o.CPUs, "cpus", 2, "vCPUs")
	fs.IntVar(&o.HTTPSPort, "https-port", 8443, "host port on 127.0.0.1 forwarded to the guest's 443 (0 picks one, -1 none)")
	fs.IntVar(&o.HTTPPort, "http-port", 8080, "host port on 127.0.0.1 forwarded to the guest's 80 (0 picks one, -1 none)")
	fs.Var(&nics, "nic", "extra NIC on a loopback L2 segment, repeatable: dgram:LPORT:RPORT[,mac=M][,model=e1000][,romfile=F][,boot] or mcast:GROUP:PORT[,…]")
	fs.StringVar(&o.Firmware, "firmware", "uefi", "uefi (OVMF) or bios (SeaBIOS)")
	fs.BoolVar(&o.Outbound, "outbound", false, "let the guest reach networks beyond this host over the management NIC")
	fs.DurationVar(&o.ReadyTimeout, "ready-timeout", 10*time.Minute, "how long to wait for \"kiln: ready\" before giving up on announcing the URL")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", 60*time.Second, "on SIGINT/SIGTERM, how long the guest gets to power off before QEMU is stopped")
	fs.StringVar(&o.Config, "config", "", "appliance config (YAML) passed to the guest through fw_cfg; it wins over the one on the image's data partition (with --targets: the base the targets' segment is added to; default the image's)")
	fs.IntVar(&o.Targets, "targets", 0, fmt.Sprintf("vetting target VMs (0-%d) network-booting from the appliance on a private segment; each is vetted on its first boot", vmrun.MaxTargets))
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("vm run: %v: %w", err, errUsage)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("vm run: unexpected arguments %q: %w", fs.Args(), errUsage)
	}
	if o.Firmware != string(qemu.UEFI) && o.Firmware != string(qemu.BIOS) {
		return o, fmt.Errorf("vm run: --firmware %q: use uefi or bios: %w", o.Firmware, errUsage)
	}
	if o.Mem < 128 || o.CPUs < 1 {
		return o, fmt.Errorf("vm run: --mem %d --cpus %d: need at least 128 MiB and 1 vCPU: %w", o.Mem, o.CPUs, errUsage)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"--https-port", o.HTTPSPort}, {"--http-port", o.HTTPPort}} {
		if p.v < -1 || p.v > 65535 {
			return o, fmt.Errorf("vm run: %s %d: use a port, 0 to pick one, or -1 for none: %w", p.name, p.v, errUsage)
		}
	}
	if o.Targets < 0 || o.Targets > vmrun.MaxTargets {
		return o, fmt.Errorf("vm run: --targets %d: use 0 (none) to %d (each target is a 2 GiB TCG guest): %w", o.Targets, vmrun.MaxTargets, errUsage)
	}
	if o.Targets > 0 && o.NoImage {
		return o, fmt.Errorf("vm run: --targets needs the appliance image: drop --no-image: %w", errUsage)
	}
	for i, n := range nics {
		nic, err := qemu.ParseNIC(n, i)
		if err != nil {
			return o, fmt.Errorf("vm run: --nic: %v: %w", err, errUsage)
		}
		o.NICs = append(o.NICs, nic)
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
	return vmrun.Run(ctx, o, s.in, s.out, s.err)
}
