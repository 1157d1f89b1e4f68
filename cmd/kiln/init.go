package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"syscall"

	"kiln.dev/kiln/appliance"
	"kiln.dev/kiln/init/pid1"
)

// runInit is PID 1 inside the appliance (reached as /sbin/init). Run by an
// operator instead, "kiln init reboot|poweroff" (or sysvinit's "init 6|0")
// asks the running PID 1 for an orderly shutdown.
func runInit(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(s.err)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("init: %v: %w", err, errUsage)
	}
	if os.Getpid() != 1 {
		return signalInit(fs.Arg(0))
	}
	// The kernel passes its unknown parameters as arguments; ignore them.
	p := pid1.New(appliance.NewPID1(s.out, kilnVersion()).Options())
	// SIGTERM and SIGINT mean "reboot" to PID 1, not "cancel": Run handles them.
	return p.Run(context.WithoutCancel(ctx))
}

// signalInit sends PID 1 the signal for a shutdown request.
func signalInit(what string) error {
	var sig syscall.Signal
	switch what {
	case "reboot", "6":
		sig = syscall.SIGTERM
	case "poweroff", "0":
		sig = syscall.SIGUSR2
	default:
		return fmt.Errorf("init: not PID 1; use \"kiln init reboot\" or \"kiln init poweroff\": %w", errUsage)
	}
	if err := syscall.Kill(1, sig); err != nil {
		return fmt.Errorf("init: asking PID 1 to %s: %w", what, err)
	}
	return nil
}
