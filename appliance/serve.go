package appliance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/services/config"
)

// ServeOptions are kiln serve's: the config file ("" for the built-in
// defaults), the state directory (required), the runtime directory
// (default <state>/run), how long shutdown may take, and the streams:
// Out gets only "kiln: ready", Err the logs and the first-login lines.
type ServeOptions struct {
	ConfigPath, StateDir, RunDir string
	StopTimeout                  time.Duration
	Out, Err                     io.Writer
}

// Serve runs the supervisor and the enabled services on this host until
// ctx ends. It prints "kiln: ready" on Out once every enabled service is
// ready, and under systemd (Type=notify) also sends READY=1 and, with
// WatchdogSec=, pings.
func Serve(ctx context.Context, o ServeOptions) error {
	paths := []*string{&o.StateDir, &o.RunDir, &o.ConfigPath}
	if o.RunDir == "" {
		o.RunDir = filepath.Join(o.StateDir, "run")
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
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return fmt.Errorf("serve: creating the state directory: %w", err)
	}
	if err := os.Chmod(o.StateDir, 0o700); err != nil {
		return fmt.Errorf("serve: making the state directory private: %w", err)
	}
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return err
	}
	specs, err := Specs(cfg, o.ConfigPath, o.StateDir, o.RunDir)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(o.Err, nil))
	if res, err := ImportHostsFile(ctx, cfg, o.StateDir); err != nil {
		return fmt.Errorf("serve: %w", err)
	} else if res != nil {
		logger.Info("imported provisioning.hosts_file", "component", "serve", "file", cfg.Provisioning.HostsFile,
			"created", res.Created, "updated", res.Updated)
	}
	// The first-login lines go to stderr: stdout carries only "kiln: ready".
	AnnounceFirstLogin(o.Err, cfg, o.StateDir, logger.With("component", "serve"))
	sup, err := supervisor.New(specs, supervisor.Options{
		RunDir:  o.RunDir,
		LogDir:  filepath.Join(o.StateDir, "log"),
		Console: o.Out,
		Echo:    o.Err,
		Logger:  logger,
	})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := sup.Start(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if interval, err := daemon.SdWatchdogEnabled(true); err == nil && interval > 0 {
		go pingWatchdog(ctx, interval/2, sup.Healthy)
	}
	select {
	case <-sup.Ready():
		daemon.SdNotify(false, daemon.SdNotifyReady)
		<-ctx.Done()
	case <-ctx.Done():
	}
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	stopCtx, cancel := context.WithTimeout(context.Background(), o.StopTimeout)
	defer cancel()
	if err := sup.Stop(stopCtx); err != nil {
		return fmt.Errorf("serve: stopping: %w", err)
	}
	return nil
}
