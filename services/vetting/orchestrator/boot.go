package orchestrator

import (
	"context"
	"errors"
	"fmt"

	"kiln.dev/kiln/services/store"
)

// ErrNoRun: a vet host network-booted with no run queued.
var ErrNoRun = errors.New("no vetting run queued")

// BootToken is called when host h (boot profile vet) asks for its boot
// script: it returns the token of the host's run, which is now booting. With
// auto_run, a host that was never vetted gets a run; otherwise a host with
// no run under way gets ErrNoRun (its script then boots the next device).
func (o *Orchestrator) BootToken(ctx context.Context, h store.Host) (runID int64, token string, err error) {
	r, err := o.st.ActiveVetRun(ctx, h.ID)
	if errors.Is(err, store.ErrNotFound) {
		r, err = o.autoRun(ctx, h)
	}
	if err != nil {
		return 0, "", err
	}
	r, err = o.change(ctx, r.ID, func(r *store.VetRun, u *store.VetUpdate) error {
		switch r.State {
		case StateQueued, StateWaitingWoL:
			r.State = StateBooting
		case StateBooting:
		case StateRunning:
			// A reboot mid-run: the agent says hello again and starts over.
		default:
			return fmt.Errorf("%w for %s: its run %d is %s", ErrNoRun, h.Name, r.ID, r.State)
		}
		return nil
	})
	if err != nil {
		return 0, "", err
	}
	if r.Token == "" {
		return 0, "", fmt.Errorf("%w for %s: run %d has no token", ErrNoRun, h.Name, r.ID)
	}
	return r.ID, r.Token, nil
}

func (o *Orchestrator) autoRun(ctx context.Context, h store.Host) (store.VetRun, error) {
	if !o.cfg.AutoRunOn() {
		return store.VetRun{}, fmt.Errorf("%w for %s; start one in the UI (vetting.auto_run is off)", ErrNoRun, h.Name)
	}
	earlier, err := o.st.ListVetRuns(ctx, store.VetRunFilter{Host: h.Name, Limit: 1})
	if err != nil {
		return store.VetRun{}, err
	}
	if len(earlier) > 0 {
		return store.VetRun{}, fmt.Errorf("%w for %s (last run %d ended %s); start another in the UI", ErrNoRun, h.Name, earlier[0].ID, earlier[0].State)
	}
	r, err := o.create(ctx, h, o.cfg.Profile(), o.cfg.HoldOnFailure, false)
	if errors.Is(err, ErrState) {
		// Another request of the same boot created it first.
		return o.st.ActiveVetRun(ctx, h.ID)
	}
	return r, err
}
