package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"
)

// LeaseState is where a lease is in its life.
type LeaseState string

// Lease states.
const (
	LeaseOffered  LeaseState = "offered"  // sent in an OFFER, not yet requested
	LeaseBound    LeaseState = "bound"    // ACKed to the client
	LeaseReleased LeaseState = "released" // the client gave it back (kept for stickiness)
	LeaseDeclined LeaseState = "declined" // a client found the address in use; MAC is empty
)

// Lease is one IPv4 address handed out by DHCP.
type Lease struct {
	IP     netip.Addr
	Subnet string // config subnet name
	// MAC of the client; "" for declined addresses.
	MAC      string
	Hostname string // option 12 from the client
	ClientID string // option 61, hex
	// RelayInfo is option 82 as "circuit-id=…;remote-id=…" (Option82Text values).
	RelayInfo string
	State     LeaseState
	Expires   time.Time
	Updated   time.Time
}

// Active reports whether the lease still holds its address at now.
func (l Lease) Active(now time.Time) bool {
	return (l.State == LeaseBound || l.State == LeaseOffered || l.State == LeaseDeclined) && now.Before(l.Expires)
}

// PutLease stores l, replacing the lease on the same address and any other
// lease of the same MAC in the same subnet (a client holds one address per subnet).
func (s *Store) PutLease(ctx context.Context, l Lease) error {
	if !l.IP.Is4() {
		return &FieldError{Field: "ip", Problem: fmt.Sprintf("%s is not an IPv4 address", l.IP), Err: ErrInvalid}
	}
	var mac any
	if l.MAC != "" {
		n, err := NormalizeMAC(l.MAC)
		if err != nil {
			return &FieldError{Field: "mac", Problem: err.Error(), Err: ErrInvalid}
		}
		l.MAC, mac = n, n
	}
	switch l.State {
	case LeaseOffered, LeaseBound, LeaseReleased, LeaseDeclined:
	default:
		return &FieldError{Field: "state", Problem: fmt.Sprintf("unknown lease state %q", l.State), Err: ErrInvalid}
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		changed := false
		if mac != nil {
			res, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE subnet = ? AND mac = ? AND ip <> ?`, l.Subnet, mac, l.IP.String())
			if err != nil {
				return fmt.Errorf("replacing lease of %s: %w", l.MAC, err)
			}
			n, _ := res.RowsAffected()
			changed = n > 0
		}
		old, err := leaseByIP(ctx, tx, l.IP)
		if errors.Is(err, ErrNotFound) {
			changed = true
		} else if err != nil {
			return err
		} else if old.MAC != l.MAC || old.Hostname != l.Hostname || old.Subnet != l.Subnet || old.State != l.State {
			changed = true
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO leases (ip, subnet, mac, hostname, client_id, relay_info, state, expires_ms, updated_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (ip) DO UPDATE SET subnet = excluded.subnet, mac = excluded.mac, hostname = excluded.hostname,
				client_id = excluded.client_id, relay_info = excluded.relay_info, state = excluded.state,
				expires_ms = excluded.expires_ms, updated_ms = excluded.updated_ms`,
			l.IP.String(), l.Subnet, mac, l.Hostname, l.ClientID, l.RelayInfo, string(l.State), ms2int(l.Expires), ms2int(s.now())); err != nil {
			return fmt.Errorf("storing lease %s: %w", l.IP, err)
		}
		if changed {
			return bump(ctx, tx)
		}
		return nil
	})
}

const leaseColumns = `ip, subnet, mac, hostname, client_id, relay_info, state, expires_ms, updated_ms`

type scanner interface{ Scan(...any) error }

func scanLease(r scanner) (Lease, error) {
	var l Lease
	var ip, state string
	var mac sql.NullString
	var exp, upd int64
	if err := r.Scan(&ip, &l.Subnet, &mac, &l.Hostname, &l.ClientID, &l.RelayInfo, &state, &exp, &upd); err != nil {
		return Lease{}, err
	}
	l.IP, _ = netip.ParseAddr(ip)
	l.MAC, l.State = mac.String, LeaseState(state)
	l.Expires, l.Updated = int2time(exp), int2time(upd)
	return l, nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func leaseByIP(ctx context.Context, q queryer, ip netip.Addr) (Lease, error) {
	l, err := scanLease(q.QueryRowContext(ctx, `SELECT `+leaseColumns+` FROM leases WHERE ip = ?`, ip.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return Lease{}, fmt.Errorf("lease %s: %w", ip, ErrNotFound)
	} else if err != nil {
		return Lease{}, fmt.Errorf("reading lease %s: %w", ip, err)
	}
	return l, nil
}

// LeaseByIP returns the lease row of an address (in any state).
func (s *Store) LeaseByIP(ctx context.Context, ip netip.Addr) (Lease, error) {
	return leaseByIP(ctx, s.db, ip)
}

// LeaseByMAC returns the lease of mac in subnet (in any state).
func (s *Store) LeaseByMAC(ctx context.Context, subnet, mac string) (Lease, error) {
	n, err := NormalizeMAC(mac)
	if err != nil {
		return Lease{}, &FieldError{Field: "mac", Problem: err.Error(), Err: ErrInvalid}
	}
	l, err := scanLease(s.db.QueryRowContext(ctx, `SELECT `+leaseColumns+` FROM leases WHERE subnet = ? AND mac = ?`, subnet, n))
	if errors.Is(err, sql.ErrNoRows) {
		return Lease{}, fmt.Errorf("lease of %s in %s: %w", n, subnet, ErrNotFound)
	} else if err != nil {
		return Lease{}, fmt.Errorf("reading lease of %s: %w", n, err)
	}
	return l, nil
}

// Leases returns the leases of one subnet, or of all subnets when subnet is "",
// ordered by address.
func (s *Store) Leases(ctx context.Context, subnet string) ([]Lease, error) {
	q := `SELECT ` + leaseColumns + ` FROM leases`
	var args []any
	if subnet != "" {
		q += ` WHERE subnet = ?`
		args = append(args, subnet)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("querying leases: %w", err)
	}
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, fmt.Errorf("reading lease: %w", err)
		}
		out = append(out, l)
	}
	sortLeases(out)
	return out, rows.Err()
}

func sortLeases(ls []Lease) {
	// Text order is not address order ("10.0.0.10" < "10.0.0.9").
	sort.Slice(ls, func(i, j int) bool { return ls[i].IP.Less(ls[j].IP) })
}

// DeleteLease forgets the lease on ip.
func (s *Store) DeleteLease(ctx context.Context, ip netip.Addr) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE ip = ?`, ip.String())
		if err != nil {
			return fmt.Errorf("deleting lease %s: %w", ip, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("lease %s: %w", ip, ErrNotFound)
		}
		return bump(ctx, tx)
	})
}
