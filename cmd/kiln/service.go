package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/svc"
)

// runService runs one service in the foreground: "kiln service <name>
// --config F --state DIR --run DIR". The supervisor starts it with
// NOTIFY_SOCKET set; readiness and watchdog pings go there over sd_notify.
func runService(ctx context.Context, args []string, s stdio) error {
	if len(args) == 0 || len(args[0]) == 0 || args[0][0] == '-' {
		return fmt.Errorf("service: name the service first (kiln service <name> --state DIR --run DIR; services: %v): %w", serviceNames(), errUsage)
	}
	name := args[0]
	entry, ok := findService(name)
	if !ok {
		return fmt.Errorf("service: kiln has no service %q (services: %v): %w", name, serviceNames(), errUsage)
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
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	// The supervisor stamps every line, so the service's own log has no time.
	logger := slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})).With("component", name)

	reg := metrics.New()
	go func() {
		if err := metrics.ServeUnix(ctx, reg, metrics.SocketPath(*runDir, name), logger); err != nil {
			logger.Warn("metrics are not served: GET /metrics will show this service as down", "err", err)
		}
	}()
	var once sync.Once
	env := svc.Env{
		Metrics:    reg,
		Version:    kilnVersion(),
		Config:     cfg,
		ConfigFile: *configPath,
		StateDir:   *stateDir,
		RunDir:     *runDir,
		Logger:     logger,
		Ready: func() {
			once.Do(func() {
				if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
					logger.Warn("sending READY=1 failed", "err", err)
				}
			})
		},
	}
	go func() {
		<-ctx.Done()
		daemon.SdNotify(false, daemon.SdNotifyStopping)
	}()
	if interval, err := daemon.SdWatchdogEnabled(false); err == nil && interval > 0 {
		go pingWatchdog(ctx, interval/2)
	}
	if err := entry.run(ctx, env); err != nil {
		return fmt.Errorf("service %s: %w", name, err)
	}
	return nil
}

// pingWatchdog sends WATCHDOG=1 every period until ctx ends.
func pingWatchdog(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		}
	}
}
