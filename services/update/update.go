// Package update is the "update" service: it checks update.channel on its
// schedule (ota/pull) and installs newer signed bundles into the inactive
// slot (ota/system), then reboots into them through PID 1.
package update

import (
	"context"
	"errors"
	"log/slog"

	"kiln.dev/kiln/ota/bundle"
	"kiln.dev/kiln/ota/pull"
	"kiln.dev/kiln/ota/system"
	"kiln.dev/kiln/services/svc"
)

// Run is the "update" service: it checks update.channel on
// its schedule and installs newer bundles, then reboots into them.
func Run(ctx context.Context, env svc.Env) error {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := env.Config.Update
	sys, err := system.Detect(system.Paths{StateDir: env.StateDir, RunDir: env.RunDir})
	if err != nil || u.Channel == "" {
		// Nothing to pull here (host mode or no channel): say so and idle,
		// rather than crash-looping.
		if err == nil {
			err = errors.New("update.channel is empty")
		}
		log.Warn("update checks are off", "reason", err)
		if env.Ready != nil {
			env.Ready()
		}
		<-ctx.Done()
		return nil
	}
	p := &pull.Puller{
		Channel: u.Channel, Period: u.Period(), ID: system.Identity(), Compatible: bundle.Compatible(),
		Running: sys.RunningGeneration,
		Failed: func(gen int) bool {
			if sys.State == nil {
				return false
			}
			r, err := sys.State.Load()
			_, failed := r.FailedGeneration(gen)
			return err == nil && failed
		},
		Installer: sys.Installer(u.BootTries(), log),
		Reboot:    system.RebootViaInit,
		Log:       log,
	}
	if env.Ready != nil {
		env.Ready()
	}
	return p.Run(ctx)
}
