package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/notify"
)

// HeartbeatLoss is how long a holding agent may stay silent before the
// hold is taken as over (the host was powered off or reset).
const HeartbeatLoss = 3 * time.Minute

// Tick does the periodic work: wakes queued hosts, times runs out, delivers
// due notifications and, when prune is set, applies retention. The
// management service calls it every few seconds.
func (o *Orchestrator) Tick(ctx context.Context, prune bool) error {
	runs, err := o.st.ListVetRuns(ctx, store.VetRunFilter{ActiveOnly: true, Limit: 1000})
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range runs {
		if err := o.tickRun(ctx, r); err != nil {
			errs = append(errs, fmt.Errorf("run %d: %w", r.ID, err))
		}
	}
	if err := o.deliver(ctx); err != nil {
		errs = append(errs, err)
	}
	if prune {
		if err := o.prune(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (o *Orchestrator) tickRun(ctx context.Context, r store.VetRun) error {
	now := o.now()
	bootTimeout := o.cfg.BootTimeoutOrDefault()
	switch {
	case r.State == StateQueued && o.cfg.WoLOn() && o.WoL != nil:
		mac, err := o.wolMAC(ctx, r)
		if err != nil {
			return err
		}
		if err := o.WoL(ctx, mac); err != nil {
			o.log.Warn("wake-on-LAN failed", "run", r.ID, "host", r.Host, "mac", mac, "err", err)
		}
		_, err = o.change(ctx, r.ID, func(r *store.VetRun, u *store.VetUpdate) error {
			if r.State == StateQueued {
				r.State = StateWaitingWoL
			}
			return nil
		})
		return err
	case (r.State == StateQueued || r.State == StateWaitingWoL || r.State == StateBooting) && now.Sub(r.Created) > bootTimeout:
		return o.timeOut(ctx, r.ID, fmt.Sprintf("the host did not start the vetting image within %s; check that it network-boots first (firmware boot order), that it is powered and cabled to the provisioning network, and its MAC", bootTimeout))
	case r.State == StateRunning && !r.Deadline.IsZero() && now.After(r.Deadline):
		return o.timeOut(ctx, r.ID, fmt.Sprintf("the agent did not report within the %s profile's budget of %s", r.Profile, budget(r.Profile)))
	case r.State == StateHolding && now.Sub(r.Heartbeat) > HeartbeatLoss:
		_, err := o.change(ctx, r.ID, func(r *store.VetRun, u *store.VetUpdate) error {
			if r.State == StateHolding {
				o.end(r, u, StateFailed, "")
				u.Events = append(u.Events, noteEvent(r, now, "the held host stopped answering; hold ended"))
			}
			return nil
		})
		return err
	case r.State == StateHolding && now.Sub(r.Ended) > o.cfg.HoldMaxOrDefault():
		_, err := o.change(ctx, r.ID, func(r *store.VetRun, u *store.VetUpdate) error {
			if r.State == StateHolding {
				o.end(r, u, StateFailed, "")
				u.Events = append(u.Events, noteEvent(r, now, "hold ended after vetting.hold_max"))
			}
			return nil
		})
		return err
	}
	return nil
}

func (o *Orchestrator) timeOut(ctx context.Context, id int64, why string) error {
	r, err := o.change(ctx, id, func(r *store.VetRun, u *store.VetUpdate) error {
		if r.Active {
			o.end(r, u, StateTimedOut, why)
		}
		return nil
	})
	if err == nil {
		o.log.Warn("run timed out", "run", id, "host", r.Host, "why", why)
	}
	return err
}

func (o *Orchestrator) wolMAC(ctx context.Context, r store.VetRun) (string, error) {
	h, err := o.st.HostByName(ctx, r.Host)
	if err != nil {
		return "", err
	}
	if h.WoLMAC != "" {
		return h.WoLMAC, nil
	}
	if len(h.MACs) == 0 {
		return "", fmt.Errorf("host %s has no MAC to wake", h.Name)
	}
	return h.MACs[0], nil
}

func (o *Orchestrator) deliver(ctx context.Context) error {
	if o.Notify == nil {
		return nil
	}
	due, err := o.st.DueVetNotifications(ctx, o.now(), 20)
	if err != nil {
		return err
	}
	targets := map[string]config.Notify{}
	for _, t := range o.cfg.Notify {
		targets[t.Name] = t
	}
	for _, n := range due {
		t, ok := targets[n.Target]
		if !ok {
			if err := o.st.VetNotificationAttempt(ctx, n.ID, false, true, "target "+n.Target+" is no longer configured", time.Time{}); err != nil {
				return err
			}
			continue
		}
		var msg Notification
		if err := json.Unmarshal([]byte(n.Message), &msg); err != nil {
			if err := o.st.VetNotificationAttempt(ctx, n.ID, false, true, "unreadable message: "+err.Error(), time.Time{}); err != nil {
				return err
			}
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := o.Notify(sctx, t, msg)
		cancel()
		if err == nil {
			o.log.Info("notification sent", "run", n.RunID, "target", n.Target, "state", msg.State)
			if err := o.st.VetNotificationAttempt(ctx, n.ID, true, false, "", time.Time{}); err != nil {
				return err
			}
			continue
		}
		attempt := n.Attempts + 1
		wait := notify.Delay(attempt, err)
		giveUp := attempt >= notify.MaxAttempts || notify.IsPermanent(err)
		o.log.Warn("notification failed", "run", n.RunID, "target", n.Target, "attempt", attempt, "give_up", giveUp, "err", err)
		if err := o.st.VetNotificationAttempt(ctx, n.ID, false, giveUp, err.Error(), o.now().Add(wait)); err != nil {
			return err
		}
	}
	return nil
}

// prune deletes runs beyond vetting.retention and their artifacts.
func (o *Orchestrator) prune(ctx context.Context) error {
	var cutoff time.Time
	if age := o.cfg.Retention.MaxAge; age > 0 {
		cutoff = o.now().Add(-age)
	}
	ids, err := o.st.VetRunsToPrune(ctx, o.cfg.KeepRunsOrDefault(), cutoff)
	if err != nil {
		return err
	}
	for _, id := range ids {
		// Files first: a crash in between leaves a row without files (shown
		// as a missing report), never files nobody will delete.
		if err := os.RemoveAll(o.ArtifactDir(id)); err != nil {
			return fmt.Errorf("removing the artifacts of run %d: %w", id, err)
		}
		if err := o.st.DeleteVetRun(ctx, id); err != nil {
			return err
		}
		o.log.Info("run pruned", "run", id)
	}
	return nil
}
