package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// SyslogMessage is one stored syslog message.
type SyslogMessage struct {
	ID int64
	// Received is when kiln got it; Sent the sender's timestamp (zero if none).
	Received, Sent time.Time
	Source         netip.Addr
	Proto          string
	// MAC and Host are the machine the source address belonged to (a lease
	// or a reservation) when the message arrived; empty when unknown.
	MAC, Host string
	// Session is the boot session: the id of the MAC's latest dhcp_offer
	// boot event at the time (each DHCP boot starts a new one); 0 if none.
	Session            int64
	Facility, Severity int
	Hostname, App      string
	ProcID, MsgID      string
	Text               string
}

// size is what the message counts against the size-bound retention.
func (m SyslogMessage) size() int {
	return 64 + len(m.Hostname) + len(m.App) + len(m.ProcID) + len(m.MsgID) + len(m.Text) + len(m.Host)
}

// AddSyslog stores messages in one transaction.
func (s *Store) AddSyslog(ctx context.Context, ms []SyslogMessage) error {
	if len(ms) == 0 {
		return nil
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO syslog_messages (received_ms, sent_ms, source, proto, mac, host, session,
			facility, severity, hostname, app, procid, msgid, text, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("storing syslog messages: %w", err)
		}
		defer st.Close()
		for _, m := range ms {
			if m.Received.IsZero() {
				m.Received = s.now()
			}
			if _, err := st.ExecContext(ctx, ms2int(m.Received), ms2int(m.Sent), m.Source.String(), m.Proto, m.MAC, m.Host, m.Session,
				m.Facility, m.Severity, m.Hostname, m.App, m.ProcID, m.MsgID, m.Text, m.size()); err != nil {
				return fmt.Errorf("storing syslog message: %w", err)
			}
		}
		return nil
	})
}

// SyslogQuery selects stored messages.
type SyslogQuery struct {
	// Host and MAC select a machine's messages (either or both empty: all).
	Host, MAC string
	// Session selects one boot session (0: all).
	Session int64
	// After returns only messages with a larger id (to follow new ones).
	After int64
	// Limit is the most messages returned, the newest ones (<= 0: 200, at most 5000).
	Limit int
}

// Syslog returns the newest messages matching q, oldest first.
func (s *Store) Syslog(ctx context.Context, q SyslogQuery) ([]SyslogMessage, error) {
	var where []string
	var args []any
	if q.Host != "" {
		where, args = append(where, "host = ?"), append(args, q.Host)
	}
	if q.MAC != "" {
		n, err := NormalizeMAC(q.MAC)
		if err != nil {
			return nil, &FieldError{Field: "mac", Problem: err.Error(), Err: ErrInvalid}
		}
		where, args = append(where, "mac = ?"), append(args, n)
	}
	if q.Session != 0 {
		where, args = append(where, "session = ?"), append(args, q.Session)
	}
	if q.After > 0 {
		where, args = append(where, "id > ?"), append(args, q.After)
	}
	if q.Limit <= 0 {
		q.Limit = 200
	}
	query := `SELECT id, received_ms, sent_ms, source, proto, mac, host, session, facility, severity, hostname, app, procid, msgid, text
		FROM syslog_messages`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY id DESC LIMIT ?"
	rows, err := s.db.QueryContext(ctx, query, append(args, min(q.Limit, 5000))...)
	if err != nil {
		return nil, fmt.Errorf("reading syslog messages: %w", err)
	}
	defer rows.Close()
	var out []SyslogMessage
	for rows.Next() {
		var m SyslogMessage
		var recv, sent int64
		var src string
		if err := rows.Scan(&m.ID, &recv, &sent, &src, &m.Proto, &m.MAC, &m.Host, &m.Session, &m.Facility, &m.Severity,
			&m.Hostname, &m.App, &m.ProcID, &m.MsgID, &m.Text); err != nil {
			return nil, fmt.Errorf("reading syslog messages: %w", err)
		}
		m.Received, m.Sent = int2time(recv), int2time(sent)
		m.Source, _ = netip.ParseAddr(src)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading syslog messages: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}

// PruneSyslog deletes messages received before before, then the oldest
// until the rest take at most maxBytes (0: no size bound); it returns how
// many it deleted.
func (s *Store) PruneSyslog(ctx context.Context, before time.Time, maxBytes int64) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM syslog_messages WHERE received_ms < ?`, ms2int(before))
		if err != nil {
			return fmt.Errorf("pruning syslog messages by age: %w", err)
		}
		n, _ = res.RowsAffected()
		if maxBytes <= 0 {
			return nil
		}
		// The newest message whose running total (newest first) passes
		// maxBytes, and everything older, go.
		res, err = tx.ExecContext(ctx, `DELETE FROM syslog_messages WHERE id <= (
			SELECT id FROM (SELECT id, SUM(size) OVER (ORDER BY id DESC) AS total FROM syslog_messages)
			WHERE total > ? ORDER BY id DESC LIMIT 1)`, maxBytes)
		if err != nil {
			return fmt.Errorf("pruning syslog messages by size: %w", err)
		}
		m, _ := res.RowsAffected()
		n += m
		return nil
	})
	return n, err
}

// DHCPOffers returns mac's newest limit dhcp_offer boot events at or
// before t, newest first: the syslog service finds boot sessions in them.
func (s *Store) DHCPOffers(ctx context.Context, mac string, t time.Time, limit int) ([]BootEvent, error) {
	n, err := NormalizeMAC(mac)
	if err != nil {
		return nil, &FieldError{Field: "mac", Problem: err.Error(), Err: ErrInvalid}
	}
	return s.queryBootEvents(ctx, `SELECT id, mac, host, kind, detail, time_ms FROM boot_events
		WHERE mac = ? AND kind = ? AND time_ms <= ? ORDER BY time_ms DESC, id DESC LIMIT ?`, n, EventDHCPOffer, ms2int(t), max(limit, 1))
}

// MachineByIP finds the machine behind an address: the MAC of its lease
// (and the host owning that MAC), else the host reserving the address and
// its first MAC. ErrNotFound when neither exists.
func (s *Store) MachineByIP(ctx context.Context, ip netip.Addr) (mac, host string, err error) {
	if l, err := s.LeaseByIP(ctx, ip); err == nil && l.MAC != "" {
		if h, err := s.HostByMAC(ctx, l.MAC); err == nil {
			return l.MAC, h.Name, nil
		}
		return l.MAC, "", nil
	}
	res, err := s.Reservations(ctx)
	if err != nil {
		return "", "", err
	}
	if name, ok := res[ip]; ok {
		if h, err := s.HostByName(ctx, name); err == nil && len(h.MACs) > 0 {
			return h.MACs[0], h.Name, nil
		}
	}
	return "", "", fmt.Errorf("no lease or reservation for %s: %w", ip, ErrNotFound)
}
