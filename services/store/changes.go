package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// errDryRun rolls back CheckHost's transaction.
var errDryRun = errors.New("dry run")

// CheckHost validates h as CreateHost (h.ID == 0) or UpdateHost would,
// conflicts with other hosts included, and stores nothing.
func (s *Store) CheckHost(ctx context.Context, h Host) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if h.ID == 0 {
			_, err = s.createHost(ctx, tx, h)
		} else {
			_, err = s.updateHost(ctx, tx, h)
		}
		if err != nil {
			return err
		}
		return errDryRun
	})
	if errors.Is(err, errDryRun) {
		return nil
	}
	return err
}

// ChangeMarks are counters that move when something an operator watches
// changes; compare two readings to know what to reload.
type ChangeMarks struct {
	// Data is DataVersion: hosts, MACs, lease addresses and owners.
	Data int64
	// BootEvent is the highest boot event id.
	BootEvent int64
	// Leases moves with every lease write, renewals included.
	Leases int64
}

// Marks reads every change counter in one query.
func (s *Store) Marks(ctx context.Context) (ChangeMarks, error) {
	var m ChangeMarks
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT value FROM kiln_meta WHERE key = 'data_version'),
		(SELECT COALESCE(MAX(id), 0) FROM boot_events),
		(SELECT COALESCE(MAX(updated_ms), 0) + COUNT(*) FROM leases)`).Scan(&m.Data, &m.BootEvent, &m.Leases)
	if err != nil {
		return ChangeMarks{}, fmt.Errorf("reading change marks: %w", err)
	}
	return m, nil
}

// BootEventsAfter returns up to limit events with an id above afterID, of
// every MAC, oldest first (limit <= 0: 100).
func (s *Store) BootEventsAfter(ctx context.Context, afterID int64, limit int) ([]BootEvent, error) {
	if limit <= 0 {
		limit = 100
	}
	return s.queryBootEvents(ctx, `SELECT id, mac, host, kind, detail, time_ms FROM boot_events
		WHERE id > ? ORDER BY id LIMIT ?`, afterID, limit)
}

// RecentBootEvents returns the newest limit events of every MAC, newest
// first (limit <= 0: 100).
func (s *Store) RecentBootEvents(ctx context.Context, limit int) ([]BootEvent, error) {
	if limit <= 0 {
		limit = 100
	}
	return s.queryBootEvents(ctx, `SELECT id, mac, host, kind, detail, time_ms FROM boot_events
		ORDER BY time_ms DESC, id DESC LIMIT ?`, limit)
}

func (s *Store) queryBootEvents(ctx context.Context, q string, args ...any) ([]BootEvent, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("querying boot events: %w", err)
	}
	defer rows.Close()
	var out []BootEvent
	for rows.Next() {
		var e BootEvent
		var t int64
		if err := rows.Scan(&e.ID, &e.MAC, &e.Host, &e.Kind, &e.Detail, &t); err != nil {
			return nil, fmt.Errorf("reading boot event: %w", err)
		}
		e.Time = int2time(t)
		out = append(out, e)
	}
	return out, rows.Err()
}
