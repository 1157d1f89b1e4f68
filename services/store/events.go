package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Boot event kinds written by kiln's services. Other kinds are allowed.
const (
	EventDHCPOffer   = "dhcp_offer"
	EventDHCPAck     = "dhcp_ack"
	EventDHCPNak     = "dhcp_nak"
	EventDHCPDecline = "dhcp_decline"
	EventDHCPRelease = "dhcp_release"
	EventTFTP        = "tftp"
	EventScript      = "script" // iPXE script served
	EventKernel      = "kernel" // kernel/initrd fetched
)

// BootEvent is one step of a machine's network boot.
type BootEvent struct {
	ID     int64
	MAC    string
	Host   string // host name at the time, "" if unknown
	Kind   string
	Detail string
	Time   time.Time
}

// AddBootEvent records e; a zero Time means now. Token values quoted in the
// detail (a boot URL's ?token=) are redacted: events are shown to every
// read-scope API user.
func (s *Store) AddBootEvent(ctx context.Context, e BootEvent) error {
	n, err := NormalizeMAC(e.MAC)
	if err != nil {
		return &FieldError{Field: "mac", Problem: err.Error(), Err: ErrInvalid}
	}
	if e.Kind == "" {
		return &FieldError{Field: "kind", Problem: "missing", Err: ErrInvalid}
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	// A plain statement, not s.tx: events are single rows and must not wait
	// behind the IMMEDIATE lock longer than the busy timeout anyway. It still
	// queues behind this process's other writers (see Store.writeMu).
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, err := s.db.ExecContext(ctx, `INSERT INTO boot_events (mac, host, kind, detail, time_ms) VALUES (?, ?, ?, ?, ?)`,
		n, e.Host, e.Kind, Redacted(e.Detail), ms2int(e.Time)); err != nil {
		return fmt.Errorf("storing boot event: %w", err)
	}
	return nil
}

// BootEvents returns the newest limit events of mac, newest first (limit <= 0: 100).
func (s *Store) BootEvents(ctx context.Context, mac string, limit int) ([]BootEvent, error) {
	n, err := NormalizeMAC(mac)
	if err != nil {
		return nil, &FieldError{Field: "mac", Problem: err.Error(), Err: ErrInvalid}
	}
	if limit <= 0 {
		limit = 100
	}
	return s.queryBootEvents(ctx, `SELECT id, mac, host, kind, detail, time_ms FROM boot_events
		WHERE mac = ? ORDER BY time_ms DESC, id DESC LIMIT ?`, n, limit)
}

// PruneBootEvents deletes events older than before and returns how many.
func (s *Store) PruneBootEvents(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM boot_events WHERE time_ms < ?`, ms2int(before))
		if err != nil {
			return fmt.Errorf("pruning boot events: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}

// PruneBootEventsKeep deletes all but the newest keep events and returns
// how many it deleted.
func (s *Store) PruneBootEventsKeep(ctx context.Context, keep int) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM boot_events WHERE id <= (
			SELECT id FROM boot_events ORDER BY id DESC LIMIT 1 OFFSET ?)`, max(keep, 0))
		if err != nil {
			return fmt.Errorf("pruning boot events: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}
