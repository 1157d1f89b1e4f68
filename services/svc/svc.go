// Package svc defines what every service process receives from the supervisor
// that started it: its config, its directories, a logger and a readiness hook.
package svc

import (
	"context"
	"log/slog"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/metrics"
)

// Env is a running service's environment.
type Env struct {
	// Config is the appliance config, already validated.
	Config config.Config
	// StateDir is persistent state on the data partition (or --state in host mode);
	// a service keeps its files under StateDir/<service name>.
	StateDir string
	// ConfigFile is the file Config was loaded from ("" for the built-in
	// defaults); backups include it.
	ConfigFile string
	// RunDir is volatile runtime state (sockets, pid files), cleared at boot.
	RunDir string
	// Logger carries a "component" attribute naming the service.
	Logger *slog.Logger
	// Ready is called once the service answers requests; it sends READY=1 over
	// sd_notify to the supervisor. Calling it more than once is harmless.
	Ready func()
	// Metrics is the service's registry, served to the management
	// service's GET /metrics; nil in tests that do not look (a service then
	// counts into a registry of its own).
	Metrics *metrics.Registry
	// Version is kiln's version ("dev" in tests).
	Version string
}

// Registry returns env.Metrics, or a fresh registry nobody scrapes.
func (env Env) Registry() *metrics.Registry {
	if env.Metrics == nil {
		return metrics.New()
	}
	return env.Metrics
}

// RunFunc is a service's entry point. It returns when ctx is cancelled (SIGTERM)
// or on a fatal error; the supervisor restarts it with backoff.
type RunFunc func(ctx context.Context, env Env) error
