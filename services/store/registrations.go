package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Registration states.
const (
	RegistrationPending  = "pending"
	RegistrationRejected = "rejected"
)

// Registration is a machine's request, typed at its console, to become a
// host: the enrolled host owning MAC (role EnrolledRole) is to be renamed
// Name and given the rest.
type Registration struct {
	MAC  string
	Name string
	// Role, BootProfile, RootImage and Home are what the host gets when
	// the registration is applied (the config's defaults when it was made).
	Role        string
	BootProfile BootProfile
	RootImage   string
	Home        string
	// Client is the address the request came from.
	Client netip.Addr
	// State is RegistrationPending or RegistrationRejected; Reason is the
	// operator's word on a rejection.
	State            string
	Reason           string
	Created, Updated time.Time
}

// ErrNotEnrolled is wrapped when a registration names a MAC whose host is
// not one kiln enrolled by itself: registering never takes over a host an
// operator made.
var ErrNotEnrolled = errors.New("not an enrolled machine")

// normalize checks the name and MAC of r.
func (r *Registration) normalize() Errors {
	var es Errors
	mac, err := NormalizeMAC(r.MAC)
	if err != nil {
		es.invalid("mac", "%v", err)
	}
	r.MAC = mac
	r.Name = strings.ToLower(strings.TrimSpace(r.Name))
	switch {
	case r.Name == "":
		es.invalid("name", "missing (type the machine's name, e.g. pc-07)")
	case !validLabel(r.Name):
		es.invalid("name", "%q is not a valid host name (use 1-63 letters, digits and '-', not starting or ending with '-')", r.Name)
	case strings.HasPrefix(r.Name, EnrolledRole+"-"):
		es.invalid("name", "%q looks like a name kiln gives machines it does not know; choose the machine's own name", r.Name)
	}
	if r.BootProfile == "" {
		r.BootProfile = DefaultBootProfile
	}
	if !validProfile(r.BootProfile) {
		es.invalid("boot_profile", "unknown profile %q", r.BootProfile)
	}
	return es
}

// registrable returns the enrolled host owning mac inside tx, or an error
// wrapping ErrNotFound or ErrNotEnrolled.
func (s *Store) registrable(ctx context.Context, tx *sql.Tx, mac string) (Host, error) {
	var id int64
	var role string
	err := tx.QueryRowContext(ctx, `SELECT h.id, h.role FROM host_macs m JOIN hosts h ON h.id = m.host_id WHERE m.mac = ?`, mac).Scan(&id, &role)
	if errors.Is(err, sql.ErrNoRows) {
		return Host{}, fmt.Errorf("host with MAC %s: %w", mac, ErrNotFound)
	} else if err != nil {
		return Host{}, fmt.Errorf("reading the host of %s: %w", mac, err)
	}
	if role != EnrolledRole {
		return Host{}, fmt.Errorf("MAC %s belongs to a registered host: %w", mac, ErrNotEnrolled)
	}
	hs, err := queryHostsIn(ctx, tx, `SELECT `+hostColumns+` FROM hosts h WHERE h.id = ?`, id)
	if err != nil {
		return Host{}, err
	}
	if len(hs) == 0 {
		return Host{}, fmt.Errorf("host with MAC %s: %w", mac, ErrNotFound)
	}
	return hs[0], nil
}

// nameClash reports a pending registration of another MAC asking for name.
func nameClash(ctx context.Context, tx *sql.Tx, name, mac string) (Errors, error) {
	var other string
	err := tx.QueryRowContext(ctx, `SELECT mac FROM registrations WHERE name = ? AND state = ? AND mac <> ?`,
		name, RegistrationPending, mac).Scan(&other)
	switch {
	case err == nil:
		var es Errors
		es.conflict("name", "%s is already asked for by another machine waiting for approval", name)
		return es, nil
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	}
	return nil, fmt.Errorf("checking pending names: %w", err)
}

// apply makes the enrolled host h the registered host r describes.
func (s *Store) apply(ctx context.Context, tx *sql.Tx, h Host, r Registration) (Host, error) {
	h.Name, h.Role, h.BootProfile, h.RootImage, h.Home = r.Name, r.Role, r.BootProfile, r.RootImage, r.Home
	if h.Role == EnrolledRole {
		h.Role = "" // the host is no longer an unknown machine
	}
	h, err := s.updateHost(ctx, tx, h)
	if err != nil {
		return h, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM registrations WHERE mac = ?`, r.MAC); err != nil {
		return h, fmt.Errorf("removing the registration of %s: %w", r.MAC, err)
	}
	return h, nil
}

// Register applies r at once (policy open): the enrolled host owning r.MAC
// is renamed r.Name and given r's role, profile, root image and home. A
// malformed or taken name is an Errors naming field "name"; a MAC whose
// host an operator made wraps ErrNotEnrolled.
func (s *Store) Register(ctx context.Context, r Registration) (Host, error) {
	if es := r.normalize(); len(es) > 0 {
		return Host{}, es
	}
	var h Host
	err := s.tx(ctx, func(tx *sql.Tx) error {
		cur, err := s.registrable(ctx, tx, r.MAC)
		if err != nil {
			return err
		}
		if es, err := nameClash(ctx, tx, r.Name, r.MAC); err != nil || len(es) > 0 {
			return errors.Join(err, es.err())
		}
		h, err = s.apply(ctx, tx, cur, r)
		return err
	})
	return h, err
}

// RequestRegistration records r as pending (policy approve), replacing an
// earlier request of the same MAC (pending or rejected). The name is
// checked now, as Register would, so the machine's console can ask again.
func (s *Store) RequestRegistration(ctx context.Context, r Registration) (Registration, error) {
	if es := r.normalize(); len(es) > 0 {
		return Registration{}, es
	}
	r.State, r.Reason = RegistrationPending, ""
	err := s.tx(ctx, func(tx *sql.Tx) error {
		cur, err := s.registrable(ctx, tx, r.MAC)
		if err != nil {
			return err
		}
		probe := cur
		probe.Name = r.Name
		es, err := conflicts(ctx, tx, &probe)
		if err != nil {
			return err
		}
		more, err := nameClash(ctx, tx, r.Name, r.MAC)
		if err != nil {
			return err
		}
		if es = append(onlyName(es), more...); len(es) > 0 {
			return es
		}
		now := s.now()
		created := now
		var was int64
		if err := tx.QueryRowContext(ctx, `SELECT created_ms FROM registrations WHERE mac = ?`, r.MAC).Scan(&was); err == nil {
			created = int2time(was)
		}
		r.Created, r.Updated = created.UTC().Truncate(time.Millisecond), now.UTC().Truncate(time.Millisecond)
		client := ""
		if r.Client.IsValid() {
			client = r.Client.String()
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO registrations (mac, name, role, boot_profile, root_image, home, client_ip, state, reason, created_ms, updated_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?)
			ON CONFLICT (mac) DO UPDATE SET name = excluded.name, role = excluded.role, boot_profile = excluded.boot_profile,
				root_image = excluded.root_image, home = excluded.home, client_ip = excluded.client_ip, state = excluded.state,
				reason = '', updated_ms = excluded.updated_ms`,
			r.MAC, r.Name, r.Role, string(r.BootProfile), r.RootImage, r.Home, client, r.State, ms2int(r.Created), ms2int(now))
		if err != nil {
			return fmt.Errorf("storing the registration of %s: %w", r.MAC, err)
		}
		return bump(ctx, tx)
	})
	return r, err
}

// onlyName keeps the name conflicts of es (a probe of an enrolled host
// with a new name can clash on nothing else it did not already have).
func onlyName(es Errors) Errors {
	var out Errors
	for _, e := range es {
		if e.Field == "name" {
			out = append(out, e)
		}
	}
	return out
}

// RegistrationOf returns mac's registration, or an error wrapping ErrNotFound.
func (s *Store) RegistrationOf(ctx context.Context, mac string) (Registration, error) {
	n, err := NormalizeMAC(mac)
	if err != nil {
		return Registration{}, &FieldError{Field: "mac", Problem: err.Error(), Err: ErrInvalid}
	}
	rs, err := s.queryRegistrations(ctx, s.db, ` WHERE mac = ?`, n)
	if err != nil {
		return Registration{}, err
	}
	if len(rs) == 0 {
		return Registration{}, fmt.Errorf("registration of %s: %w", n, ErrNotFound)
	}
	return rs[0], nil
}

// Registrations returns every registration, oldest request first.
func (s *Store) Registrations(ctx context.Context) ([]Registration, error) {
	return s.queryRegistrations(ctx, s.db, ``)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *Store) queryRegistrations(ctx context.Context, q querier, where string, args ...any) ([]Registration, error) {
	rows, err := q.QueryContext(ctx, `SELECT mac, name, role, boot_profile, root_image, home, client_ip, state, reason, created_ms, updated_ms
		FROM registrations`+where+` ORDER BY created_ms, mac`, args...)
	if err != nil {
		return nil, fmt.Errorf("reading registrations: %w", err)
	}
	defer rows.Close()
	var out []Registration
	for rows.Next() {
		var r Registration
		var profile, client string
		var created, updated int64
		if err := rows.Scan(&r.MAC, &r.Name, &r.Role, &profile, &r.RootImage, &r.Home, &client, &r.State, &r.Reason, &created, &updated); err != nil {
			return nil, fmt.Errorf("reading registrations: %w", err)
		}
		r.BootProfile = BootProfile(profile)
		r.Client, _ = netip.ParseAddr(client)
		r.Created, r.Updated = int2time(created), int2time(updated)
		out = append(out, r)
	}
	return out, rows.Err()
}

// ApproveRegistration applies mac's pending registration to its enrolled
// host and removes it. A name taken since the request is an Errors naming
// field "name" (the registration stays; reject it, the machine asks again).
func (s *Store) ApproveRegistration(ctx context.Context, mac string) (Host, error) {
	n, err := NormalizeMAC(mac)
	if err != nil {
		return Host{}, &FieldError{Field: "mac", Problem: err.Error(), Err: ErrInvalid}
	}
	var h Host
	err = s.tx(ctx, func(tx *sql.Tx) error {
		rs, err := s.queryRegistrations(ctx, tx, ` WHERE mac = ?`, n)
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			return fmt.Errorf("registration of %s: %w", n, ErrNotFound)
		}
		r := rs[0]
		if r.State != RegistrationPending {
			return &FieldError{Field: "state", Problem: fmt.Sprintf("the registration of %s was %s; the machine must ask again", n, r.State), Err: ErrConflict}
		}
		cur, err := s.registrable(ctx, tx, n)
		if err != nil {
			return err
		}
		h, err = s.apply(ctx, tx, cur, r)
		return err
	})
	return h, err
}

// RejectRegistration marks mac's registration rejected with reason; the
// machine's console shows it and asks for a name again.
func (s *Store) RejectRegistration(ctx context.Context, mac, reason string) (Registration, error) {
	n, err := NormalizeMAC(mac)
	if err != nil {
		return Registration{}, &FieldError{Field: "mac", Problem: err.Error(), Err: ErrInvalid}
	}
	reason = strings.TrimSpace(reason)
	if bad := strings.ContainsFunc(reason, func(r rune) bool { return r < 0x20 || r == 0x7f }); bad || len(reason) > 200 {
		return Registration{}, &FieldError{Field: "reason", Problem: "must be one line of at most 200 characters", Err: ErrInvalid}
	}
	var r Registration
	err = s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE registrations SET state = ?, reason = ?, updated_ms = ? WHERE mac = ?`,
			RegistrationRejected, reason, ms2int(s.now()), n)
		if err != nil {
			return fmt.Errorf("rejecting the registration of %s: %w", n, err)
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return fmt.Errorf("registration of %s: %w", n, ErrNotFound)
		}
		rs, err := s.queryRegistrations(ctx, tx, ` WHERE mac = ?`, n)
		if err != nil || len(rs) == 0 {
			return errors.Join(err, ErrNotFound)
		}
		r = rs[0]
		return bump(ctx, tx)
	})
	return r, err
}
