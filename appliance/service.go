package appliance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/svc"
)

// ServiceOptions are kiln service's: the config file ("" for the
// built-in defaults), the state and runtime directories, the version the
// service reports, and where its log goes (the supervisor reads it).
type ServiceOptions struct {
	ConfigPath, StateDir, RunDir string
	Version                      string
	Log                          io.Writer
}

// HasService reports whether the catalog has a service called name.
func HasService(name string) bool {
	_, ok := findService(name)
	return ok
}

// RunService runs the catalog's service name in the foreground, as the
// supervisor starts it (NOTIFY_SOCKET set): readiness and watchdog pings
// go over sd_notify, its metrics registry is served on
// <run>/metrics/<name>.sock.
func RunService(ctx context.Context, name string, o ServiceOptions) error {
	entry, ok := findService(name)
	if !ok {
		return fmt.Errorf("service: kiln has no service %q (services: %v)", name, ServiceNames())
	}
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return err
	}
	// The supervisor stamps every line, so the service's own log has no time.
	logger := slog.New(slog.NewTextHandler(o.Log, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})).With("component", name)

	reg := metrics.New()
	go func() {
		if err := metrics.ServeUnix(ctx, reg, metrics.SocketPath(o.RunDir, name), logger); err != nil {
			logger.Warn("metrics are not served: GET /metrics will show this service as down", "err", err)
		}
	}()
	var once sync.Once
	env := svc.Env{
		Metrics:    reg,
		Version:    o.Version,
		Config:     cfg,
		ConfigFile: o.ConfigPath,
		StateDir:   o.StateDir,
		RunDir:     o.RunDir,
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
		go pingWatchdog(ctx, interval/2, nil)
	}
	if err := entry.run(ctx, env); err != nil {
		return fmt.Errorf("service %s: %w", name, err)
	}
	return nil
}

// pingWatchdog sends systemd's WATCHDOG=1 every period until ctx ends,
// while healthy (nil: always) says so.
func pingWatchdog(ctx context.Context, period time.Duration, healthy func() error) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if healthy == nil || healthy() == nil {
				daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			}
		}
	}
}
