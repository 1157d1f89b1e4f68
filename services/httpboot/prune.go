package httpboot

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Boot event retention: events older than BootEventMaxAge go, and at most
// BootEventMaxRows stay (the newest), checked every BootEventPruneEvery.
const (
	BootEventMaxAge     = 30 * 24 * time.Hour
	BootEventMaxRows    = 100_000
	BootEventPruneEvery = time.Hour
)

// EventPruner deletes old boot events.
type EventPruner interface {
	PruneBootEvents(ctx context.Context, before time.Time) (int64, error)
	PruneBootEventsKeep(ctx context.Context, keep int) (int64, error)
}

// PruneBootEvents applies the retention once at now.
func PruneBootEvents(ctx context.Context, p EventPruner, now time.Time, maxAge time.Duration, maxRows int) (int64, error) {
	old, err := p.PruneBootEvents(ctx, now.Add(-maxAge))
	if err != nil {
		return 0, fmt.Errorf("pruning boot events older than %s: %w", maxAge, err)
	}
	extra, err := p.PruneBootEventsKeep(ctx, maxRows)
	if err != nil {
		return old, fmt.Errorf("pruning boot events beyond %d: %w", maxRows, err)
	}
	return old + extra, nil
}

// pruneLoop applies the retention at start and every BootEventPruneEvery
// until ctx ends (the HTTP boot service runs it: it writes most events).
func pruneLoop(ctx context.Context, p EventPruner, now func() time.Time, log *slog.Logger) {
	t := time.NewTicker(BootEventPruneEvery)
	defer t.Stop()
	for {
		n, err := PruneBootEvents(ctx, p, now(), BootEventMaxAge, BootEventMaxRows)
		if err != nil {
			log.Warn("boot event retention failed; retrying in an hour", "err", err)
		} else if n > 0 {
			log.Info("pruned boot events", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
