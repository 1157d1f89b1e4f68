package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"kiln.dev/kiln/appliance"
)

// runServe runs the supervisor and the enabled services on this host until
// SIGINT/SIGTERM: "kiln serve --config F --state DIR [--run DIR]". It prints
// "kiln: ready" on stdout once every enabled service is ready, and under
// systemd (Type=notify) also sends READY=1 and, with WatchdogSec=, pings.
func runServe(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(s.err)
	configPath := fs.String("config", "", "appliance config file (default: built-in defaults)")
	stateDir := fs.String("state", "", "persistent state directory; logs go to <state>/log (required)")
	runDir := fs.String("run", "", "runtime directory for sockets (default <state>/run)")
	stopTimeout := fs.Duration("stop-timeout", 30*time.Second, "how long shutdown may take before everything left is killed")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("serve: %v: %w", err, errUsage)
	}
	if *stateDir == "" || fs.NArg() != 0 {
		return fmt.Errorf("serve: --state DIR is required (kiln serve --config F --state DIR [--run DIR]): %w", errUsage)
	}
	return appliance.Serve(ctx, appliance.ServeOptions{
		ConfigPath: *configPath, StateDir: *stateDir, RunDir: *runDir, StopTimeout: *stopTimeout,
		Out: s.out, Err: s.err,
	})
}
