package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Initiator is a host's iSCSI initiator: its IQN and CHAP credentials.
// The secrets are sealed by the caller (package iscsi's Sealer); the
// store never sees them in clear text.
type Initiator struct {
	Host         string
	IQN          string
	CHAPUser     string
	CHAPSealed   string
	MutualUser   string // "" = one-way CHAP
	MutualSealed string
	Updated      time.Time
}

// Volume is an iSCSI volume: a sparse file exported to its host as a LUN.
type Volume struct {
	ID   int64
	Name string // DNS-label-like, unique per host
	// Host owns the volume; "" makes it a golden volume (a clone source,
	// exported to nobody).
	Host string
	Size int64 // logical bytes
	// Source says what it was made from: "", "volume:<host>/<name>",
	// "volume:<name>" (a golden) or "image:<path>".
	Source           string
	Created, Updated time.Time
}

// MinVolumeSize and VolumeAlign bound volume sizes: whole MiB, so every
// sector size an initiator may use divides them.
const (
	MinVolumeSize = 1 << 20
	VolumeAlign   = 1 << 20
)

func (v *Volume) normalize() Errors {
	var es Errors
	v.Name = strings.ToLower(strings.TrimSpace(v.Name))
	v.Host = strings.ToLower(strings.TrimSpace(v.Host))
	if !validLabel(v.Name) {
		es.invalid("name", "%q is not a valid volume name (use 1-63 letters, digits and '-', e.g. boot)", v.Name)
	}
	if v.Size < MinVolumeSize || v.Size%VolumeAlign != 0 {
		es.invalid("size", "%d bytes: a volume is a whole number of MiB, at least 1 MiB (e.g. 16G)", v.Size)
	}
	return es
}

// PutInitiator stores (or replaces) host's initiator.
func (s *Store) PutInitiator(ctx context.Context, in Initiator) (Initiator, error) {
	var es Errors
	in.Host = strings.ToLower(strings.TrimSpace(in.Host))
	if in.IQN == "" || len(in.IQN) > 223 || strings.ContainsAny(in.IQN, " \t\n") {
		es.invalid("iqn", "%q is not an iSCSI name", in.IQN)
	}
	if in.CHAPUser == "" || in.CHAPSealed == "" {
		es.invalid("chap", "a CHAP user and sealed secret are required")
	}
	if (in.MutualUser == "") != (in.MutualSealed == "") {
		es.invalid("mutual_chap", "set both the mutual user and secret, or neither")
	}
	if len(es) > 0 {
		return in, es
	}
	in.Updated = s.now()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		id, err := hostID(ctx, tx, in.Host)
		if err != nil {
			return err
		}
		var other string
		err = tx.QueryRowContext(ctx, `SELECT h.name FROM iscsi_initiators i JOIN hosts h ON h.id = i.host_id
			WHERE i.iqn = ? AND i.host_id <> ?`, in.IQN, id).Scan(&other)
		if err == nil {
			return Errors{{Field: "iqn", Problem: fmt.Sprintf("%s is already host %s's initiator", in.IQN, other), Err: ErrConflict}}
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("checking initiator %s: %w", in.IQN, err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO iscsi_initiators (host_id, iqn, chap_user, chap_sealed, mutual_user, mutual_sealed, updated_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (host_id) DO UPDATE SET iqn = excluded.iqn, chap_user = excluded.chap_user,
				chap_sealed = excluded.chap_sealed, mutual_user = excluded.mutual_user,
				mutual_sealed = excluded.mutual_sealed, updated_ms = excluded.updated_ms`,
			id, in.IQN, in.CHAPUser, in.CHAPSealed, in.MutualUser, in.MutualSealed, ms2int(in.Updated))
		if err != nil {
			return fmt.Errorf("storing initiator of %s: %w", in.Host, err)
		}
		return bump(ctx, tx)
	})
	return in, err
}

// DeleteInitiator removes host's initiator (its target goes with it).
func (s *Store) DeleteInitiator(ctx context.Context, host string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM iscsi_initiators WHERE host_id = (SELECT id FROM hosts WHERE name = ?)`,
			strings.ToLower(host))
		if err != nil {
			return fmt.Errorf("deleting initiator of %s: %w", host, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("initiator of host %s: %w", host, ErrNotFound)
		}
		return bump(ctx, tx)
	})
}

// Initiators returns every host's initiator, by host name.
func (s *Store) Initiators(ctx context.Context) ([]Initiator, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT h.name, i.iqn, i.chap_user, i.chap_sealed, i.mutual_user, i.mutual_sealed, i.updated_ms
		FROM iscsi_initiators i JOIN hosts h ON h.id = i.host_id ORDER BY h.name`)
	if err != nil {
		return nil, fmt.Errorf("querying initiators: %w", err)
	}
	defer rows.Close()
	var out []Initiator
	for rows.Next() {
		var in Initiator
		var upd int64
		if err := rows.Scan(&in.Host, &in.IQN, &in.CHAPUser, &in.CHAPSealed, &in.MutualUser, &in.MutualSealed, &upd); err != nil {
			return nil, fmt.Errorf("reading initiator: %w", err)
		}
		in.Updated = int2time(upd)
		out = append(out, in)
	}
	return out, rows.Err()
}

// InitiatorOf returns host's initiator (ErrNotFound if it has none).
func (s *Store) InitiatorOf(ctx context.Context, host string) (Initiator, error) {
	all, err := s.Initiators(ctx)
	if err != nil {
		return Initiator{}, err
	}
	for _, in := range all {
		if in.Host == strings.ToLower(host) {
			return in, nil
		}
	}
	return Initiator{}, fmt.Errorf("initiator of host %s: %w", host, ErrNotFound)
}

// CheckVolume validates v as CreateVolume would (its host exists, its
// name is free) and stores nothing.
func (s *Store) CheckVolume(ctx context.Context, v Volume) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.createVolume(ctx, tx, v); err != nil {
			return err
		}
		return errDryRun
	})
	if errors.Is(err, errDryRun) {
		return nil
	}
	return err
}

// CreateVolume stores a new volume record. The caller makes its file
// (package iscsi's Volumes) and checks the quota first.
func (s *Store) CreateVolume(ctx context.Context, v Volume) (Volume, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		v, err = s.createVolume(ctx, tx, v)
		return err
	})
	return v, err
}

func (s *Store) createVolume(ctx context.Context, tx *sql.Tx, v Volume) (Volume, error) {
	if es := v.normalize(); len(es) > 0 {
		return v, es
	}
	v.Created, v.Updated = s.now(), s.now()
	var hid any
	if v.Host != "" {
		id, err := hostID(ctx, tx, v.Host)
		if err != nil {
			return v, err
		}
		hid = id
	}
	if _, err := volumeIn(ctx, tx, v.Host, v.Name); err == nil {
		return v, Errors{{Field: "name", Problem: fmt.Sprintf("volume %s already exists", volumeLabel(v.Host, v.Name)), Err: ErrConflict}}
	} else if !errors.Is(err, ErrNotFound) {
		return v, err
	}
	err := tx.QueryRowContext(ctx, `INSERT INTO iscsi_volumes (name, host_id, size_bytes, source, created_ms, updated_ms)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`, v.Name, hid, v.Size, v.Source, ms2int(v.Created), ms2int(v.Updated)).Scan(&v.ID)
	if err != nil {
		return v, fmt.Errorf("storing volume %s: %w", volumeLabel(v.Host, v.Name), err)
	}
	return v, bump(ctx, tx)
}

// ResizeVolume sets a volume's logical size; it only grows.
func (s *Store) ResizeVolume(ctx context.Context, host, name string, size int64) (Volume, error) {
	var v Volume
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if v, err = volumeIn(ctx, tx, host, name); err != nil {
			return err
		}
		if size < v.Size {
			return Errors{{Field: "size", Problem: fmt.Sprintf("%d bytes is smaller than the volume's %d: volumes only grow (a filesystem on it would be cut)", size, v.Size), Err: ErrInvalid}}
		}
		v.Size = size
		if es := v.normalize(); len(es) > 0 {
			return es
		}
		v.Updated = s.now()
		if _, err := tx.ExecContext(ctx, `UPDATE iscsi_volumes SET size_bytes = ?, updated_ms = ? WHERE id = ?`, v.Size, ms2int(v.Updated), v.ID); err != nil {
			return fmt.Errorf("resizing volume %s: %w", volumeLabel(host, name), err)
		}
		return bump(ctx, tx)
	})
	return v, err
}

// DeleteVolume removes a volume record (the caller removes its file after).
func (s *Store) DeleteVolume(ctx context.Context, host, name string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		v, err := volumeIn(ctx, tx, host, name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM iscsi_volumes WHERE id = ?`, v.ID); err != nil {
			return fmt.Errorf("deleting volume %s: %w", volumeLabel(host, name), err)
		}
		return bump(ctx, tx)
	})
}

// Volumes returns every volume, golden ones (no host) first, then by host and name.
func (s *Store) Volumes(ctx context.Context) ([]Volume, error) {
	return queryVolumes(ctx, s.db, ``)
}

// VolumeByName returns host's volume name (host "": a golden volume).
func (s *Store) VolumeByName(ctx context.Context, host, name string) (Volume, error) {
	return volumeIn(ctx, s.db, host, name)
}

func volumeIn(ctx context.Context, q rowsQueryer, host, name string) (Volume, error) {
	host, name = strings.ToLower(host), strings.ToLower(name)
	vs, err := queryVolumes(ctx, q, `WHERE v.name = ? AND COALESCE(h.name, '') = ?`, name, host)
	if err != nil {
		return Volume{}, err
	}
	if len(vs) == 0 {
		return Volume{}, fmt.Errorf("volume %s: %w", volumeLabel(host, name), ErrNotFound)
	}
	return vs[0], nil
}

func queryVolumes(ctx context.Context, q rowsQueryer, where string, args ...any) ([]Volume, error) {
	rows, err := q.QueryContext(ctx, `SELECT v.id, v.name, COALESCE(h.name, ''), v.size_bytes, v.source, v.created_ms, v.updated_ms
		FROM iscsi_volumes v LEFT JOIN hosts h ON h.id = v.host_id `+where+` ORDER BY COALESCE(h.name, ''), v.name`, args...)
	if err != nil {
		return nil, fmt.Errorf("querying volumes: %w", err)
	}
	defer rows.Close()
	var out []Volume
	for rows.Next() {
		var v Volume
		var c, u int64
		if err := rows.Scan(&v.ID, &v.Name, &v.Host, &v.Size, &v.Source, &c, &u); err != nil {
			return nil, fmt.Errorf("reading volume: %w", err)
		}
		v.Created, v.Updated = int2time(c), int2time(u)
		out = append(out, v)
	}
	return out, rows.Err()
}

// volumeLabel names a volume in messages: "host/name", or "name" for a golden one.
func volumeLabel(host, name string) string {
	if host == "" {
		return name
	}
	return host + "/" + name
}

func hostID(ctx context.Context, tx *sql.Tx, host string) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM hosts WHERE name = ?`, strings.ToLower(host)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("host %s: %w", host, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("finding host %s: %w", host, err)
	}
	return id, nil
}

// rowsQueryer is a *sql.DB or *sql.Tx.
type rowsQueryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}
