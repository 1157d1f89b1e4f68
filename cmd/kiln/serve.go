package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/services/config"
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
	paths := []*string{stateDir, runDir, configPath}
	if *runDir == "" {
		*runDir = filepath.Join(*stateDir, "run")
	}
	for _, p := range paths {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		*p = abs
	}
	// The state directory holds the database, keys and tokens: root only,
	// whatever the umask or an older kiln made of it.
	if err := os.MkdirAll(*stateDir, 0o700); err != nil {
		return fmt.Errorf("serve: creating the state directory: %w", err)
	}
	if err := os.Chmod(*stateDir, 0o700); err != nil {
		return fmt.Errorf("serve: making the state directory private: %w", err)
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	specs, err := serviceSpecs(cfg, *configPath, *stateDir, *runDir)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(s.err, nil))
	if res, err := importHostsFile(ctx, cfg, *stateDir); err != nil {
		return fmt.Errorf("serve: %w", err)
	} else if res != nil {
		logger.Info("imported provisioning.hosts_file", "component", "serve", "file", cfg.Provisioning.HostsFile,
			"created", res.Created, "updated", res.Updated)
	}
	// The first-login lines go to stderr: stdout carries only "kiln: ready".
	announceFirstLogin(s.err, cfg, *stateDir, logger.With("component", "serve"))
	sup, err := supervisor.New(specs, supervisor.Options{
		RunDir:  *runDir,
		LogDir:  filepath.Join(*stateDir, "log"),
		Console: s.out,
		Echo:    s.err,
		Logger:  logger,
	})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := sup.Start(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if interval, err := daemon.SdWatchdogEnabled(true); err == nil && interval > 0 {
		go petSystemdWatchdog(ctx, sup, interval/2)
	}
	select {
	case <-sup.Ready():
		daemon.SdNotify(false, daemon.SdNotifyReady)
		<-ctx.Done()
	case <-ctx.Done():
	}
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	stopCtx, cancel := context.WithTimeout(context.Background(), *stopTimeout)
	defer cancel()
	if err := sup.Stop(stopCtx); err != nil {
		return fmt.Errorf("serve: stopping: %w", err)
	}
	return nil
}

// petSystemdWatchdog sends WATCHDOG=1 every period while the supervisor is healthy.
func petSystemdWatchdog(ctx context.Context, sup *supervisor.Supervisor, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if sup.Healthy() == nil {
				daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			}
		}
	}
}
