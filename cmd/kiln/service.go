package main

import (
	"context"
	"flag"
	"fmt"

	"kiln.dev/kiln/appliance"
)

// runService runs one service in the foreground: "kiln service <name>
// --config F --state DIR --run DIR". The supervisor starts it with
// NOTIFY_SOCKET set; readiness and watchdog pings go there over sd_notify.
func runService(ctx context.Context, args []string, s stdio) error {
	if len(args) == 0 || len(args[0]) == 0 || args[0][0] == '-' {
		return fmt.Errorf("service: name the service first (kiln service <name> --state DIR --run DIR; services: %v): %w", appliance.ServiceNames(), errUsage)
	}
	name := args[0]
	if !appliance.HasService(name) {
		return fmt.Errorf("service: kiln has no service %q (services: %v): %w", name, appliance.ServiceNames(), errUsage)
	}
	fs := flag.NewFlagSet("service "+name, flag.ContinueOnError)
	fs.SetOutput(s.err)
	configPath := fs.String("config", "", "appliance config file (default: built-in defaults)")
	stateDir := fs.String("state", "", "persistent state directory (required)")
	runDir := fs.String("run", "", "runtime directory (required)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("service: %v: %w", err, errUsage)
	}
	if *stateDir == "" || *runDir == "" || fs.NArg() != 0 {
		return fmt.Errorf("service: --state and --run are required and nothing else: %w", errUsage)
	}
	return appliance.RunService(ctx, name, appliance.ServiceOptions{
		ConfigPath: *configPath, StateDir: *stateDir, RunDir: *runDir, Version: kilnVersion(), Log: s.err,
	})
}
