package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"kiln.dev/kiln/services/internal/exportname"
)

// RootImage is one complete version of a root image: a directory tree on
// the data partition the nfs service exports read-only.
type RootImage struct {
	Name    string
	Version int
	// Promoted marks the version hosts naming the image without a version
	// boot; at most one per name.
	Promoted bool
	// Size is the bytes of its files, Files how many entries it has.
	Size, Files int64
	// Source says where it was imported from (a file name), for people.
	Source              string
	Created, PromotedAt time.Time
}

// Ref is how hosts name this version: "name@version".
func (r RootImage) Ref() string { return r.Name + "@" + strconv.Itoa(r.Version) }

// ValidExportName reports whether s may name a root image or a home.
func ValidExportName(s string) bool { return exportname.Valid(s) }

// ParseImageRef splits a host's root image choice, "name" or "name@N";
// version 0 means the promoted one.
func ParseImageRef(ref string) (name string, version int, ok bool) { return exportname.ParseRef(ref) }

// ValidImageRef reports whether ref is a valid root image choice.
func ValidImageRef(ref string) bool {
	_, _, ok := exportname.ParseRef(ref)
	return ok
}

const rootImageColumns = `name, version, promoted, size_bytes, files, source, created_ms, promoted_ms`

func scanRootImage(r scanner) (RootImage, error) {
	var ri RootImage
	var created, promoted int64
	if err := r.Scan(&ri.Name, &ri.Version, &ri.Promoted, &ri.Size, &ri.Files, &ri.Source, &created, &promoted); err != nil {
		return RootImage{}, err
	}
	ri.Created, ri.PromotedAt = int2time(created), int2time(promoted)
	return ri, nil
}

// RootImages returns every version of every root image, by name and version.
func (s *Store) RootImages(ctx context.Context) ([]RootImage, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+rootImageColumns+` FROM root_images ORDER BY name, version`)
	if err != nil {
		return nil, fmt.Errorf("querying root images: %w", err)
	}
	defer rows.Close()
	var out []RootImage
	for rows.Next() {
		ri, err := scanRootImage(rows)
		if err != nil {
			return nil, fmt.Errorf("reading root image: %w", err)
		}
		out = append(out, ri)
	}
	return out, rows.Err()
}

// RootImageByRef returns the version ref names ("name" for the promoted one).
func (s *Store) RootImageByRef(ctx context.Context, ref string) (RootImage, error) {
	name, v, ok := ParseImageRef(ref)
	if !ok {
		return RootImage{}, Errors{{Field: "root_image", Problem: fmt.Sprintf("%q is not NAME or NAME@VERSION", ref), Err: ErrInvalid}}
	}
	q, args := `SELECT `+rootImageColumns+` FROM root_images WHERE name = ? AND version = ?`, []any{name, v}
	if v == 0 {
		q, args = `SELECT `+rootImageColumns+` FROM root_images WHERE name = ? AND promoted = 1`, []any{name}
	}
	ri, err := scanRootImage(s.db.QueryRowContext(ctx, q, args...))
	if errors.Is(err, sql.ErrNoRows) {
		if v == 0 {
			return RootImage{}, fmt.Errorf("root image %s has no promoted version: %w", name, ErrNotFound)
		}
		return RootImage{}, fmt.Errorf("root image %s: %w", ref, ErrNotFound)
	} else if err != nil {
		return RootImage{}, fmt.Errorf("reading root image %s: %w", ref, err)
	}
	return ri, nil
}

// NextRootVersion returns the version a new import of name gets: one more
// than any version the name ever had that is still stored.
func (s *Store) NextRootVersion(ctx context.Context, name string) (int, error) {
	var v sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM root_images WHERE name = ?`, name).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading versions of root image %s: %w", name, err)
	}
	return int(v.Int64) + 1, nil
}

// AddRootImage records a version whose files are complete. It is not
// promoted unless ri.Promoted says so (then it replaces the promoted one).
func (s *Store) AddRootImage(ctx context.Context, ri RootImage) (RootImage, error) {
	if !ValidExportName(ri.Name) {
		return RootImage{}, Errors{{Field: "name", Problem: fmt.Sprintf("%q is not a valid root image name (use "+exportname.Rule+")", ri.Name), Err: ErrInvalid}}
	}
	if ri.Version < 1 {
		return RootImage{}, Errors{{Field: "version", Problem: fmt.Sprintf("%d is not a version (1 or more)", ri.Version), Err: ErrInvalid}}
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	ri.Created, ri.PromotedAt = now, time.Time{}
	if ri.Promoted {
		ri.PromotedAt = now
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM root_images WHERE name = ? AND version = ?`, ri.Name, ri.Version).Scan(&n); err != nil {
			return fmt.Errorf("checking root image %s: %w", ri.Ref(), err)
		}
		if n > 0 {
			return Errors{{Field: "version", Problem: fmt.Sprintf("root image %s already exists", ri.Ref()), Err: ErrConflict}}
		}
		if ri.Promoted {
			if _, err := tx.ExecContext(ctx, `UPDATE root_images SET promoted = 0 WHERE name = ?`, ri.Name); err != nil {
				return fmt.Errorf("unpromoting root image %s: %w", ri.Name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO root_images (`+rootImageColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			ri.Name, ri.Version, ri.Promoted, ri.Size, ri.Files, ri.Source, ms2int(ri.Created), ms2int(ri.PromotedAt)); err != nil {
			return fmt.Errorf("storing root image %s: %w", ri.Ref(), err)
		}
		return bump(ctx, tx)
	})
	if err != nil {
		return RootImage{}, err
	}
	return ri, nil
}

// PromoteRootImage makes name@version the version hosts naming name boot
// from now on; hosts running the previous one keep it exported.
func (s *Store) PromoteRootImage(ctx context.Context, name string, version int) (RootImage, error) {
	var ri RootImage
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		ri, err = scanRootImage(tx.QueryRowContext(ctx, `SELECT `+rootImageColumns+` FROM root_images WHERE name = ? AND version = ?`, name, version))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("root image %s@%d: %w", name, version, ErrNotFound)
		} else if err != nil {
			return fmt.Errorf("reading root image %s@%d: %w", name, version, err)
		}
		if ri.Promoted {
			return nil
		}
		now := s.now().UTC().Truncate(time.Millisecond)
		if _, err := tx.ExecContext(ctx, `UPDATE root_images SET promoted = 0 WHERE name = ?`, name); err != nil {
			return fmt.Errorf("unpromoting root image %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE root_images SET promoted = 1, promoted_ms = ? WHERE name = ? AND version = ?`, ms2int(now), name, version); err != nil {
			return fmt.Errorf("promoting root image %s@%d: %w", name, version, err)
		}
		ri.Promoted, ri.PromotedAt = true, now
		return bump(ctx, tx)
	})
	return ri, err
}

// DeleteRootImage forgets name@version; the caller removes its files
// afterwards. The promoted version, a version hosts pin, and (unless force)
// a version a client used within inUse of now are refused with ErrConflict.
func (s *Store) DeleteRootImage(ctx context.Context, name string, version int, inUse time.Duration, force bool) error {
	ref := name + "@" + strconv.Itoa(version)
	return s.tx(ctx, func(tx *sql.Tx) error {
		ri, err := scanRootImage(tx.QueryRowContext(ctx, `SELECT `+rootImageColumns+` FROM root_images WHERE name = ? AND version = ?`, name, version))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("root image %s: %w", ref, ErrNotFound)
		} else if err != nil {
			return fmt.Errorf("reading root image %s: %w", ref, err)
		}
		if ri.Promoted {
			return Errors{{Field: "version", Problem: fmt.Sprintf("%s is the promoted version of %s: promote another version first (kiln roots promote %s@N)", ref, name, name), Err: ErrConflict}}
		}
		pinned, err := hostNames(ctx, tx, `SELECT name FROM hosts WHERE root_image = ? ORDER BY name`, ref)
		if err != nil {
			return err
		}
		if len(pinned) > 0 {
			return Errors{{Field: "version", Problem: fmt.Sprintf("%s is pinned by host(s) %s: set their root_image to another version first", ref, strings.Join(pinned, ", ")), Err: ErrConflict}}
		}
		if !force {
			users, err := hostNames(ctx, tx, `SELECT host FROM nfs_usage WHERE export = ? AND seen_ms >= ? ORDER BY host`,
				"/roots/"+name+"/"+strconv.Itoa(version), ms2int(s.now().Add(-inUse)))
			if err != nil {
				return err
			}
			if len(users) > 0 {
				return Errors{{Field: "version", Problem: fmt.Sprintf("%s was used by host(s) %s within the last %s: reboot them onto another version, or remove it anyway with --force", ref, strings.Join(users, ", "), inUse), Err: ErrConflict}}
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM root_images WHERE name = ? AND version = ?`, name, version); err != nil {
			return fmt.Errorf("deleting root image %s: %w", ref, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM nfs_usage WHERE export = ?`, "/roots/"+name+"/"+strconv.Itoa(version)); err != nil {
			return fmt.Errorf("forgetting the clients of root image %s: %w", ref, err)
		}
		return bump(ctx, tx)
	})
}

func hostNames(ctx context.Context, tx *sql.Tx, q string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("querying hosts: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("reading host name: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// NFSUse is one host's recent use of one export.
type NFSUse struct {
	Host, Export string
	Seen         time.Time
}

// MarkNFSUse records that the kernel asked about host using export at t.
// It does not change DataVersion: use changes no desired state.
func (s *Store) MarkNFSUse(ctx context.Context, host, export string, t time.Time) error {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO nfs_usage (host, export, seen_ms) VALUES (?, ?, ?)
		ON CONFLICT (host, export) DO UPDATE SET seen_ms = MAX(seen_ms, excluded.seen_ms)`, host, export, ms2int(t)); err != nil {
		return fmt.Errorf("recording NFS use of %s by %s: %w", export, host, err)
	}
	return nil
}

// NFSUses returns every recorded use, by export and host.
func (s *Store) NFSUses(ctx context.Context) ([]NFSUse, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT host, export, seen_ms FROM nfs_usage ORDER BY export, host`)
	if err != nil {
		return nil, fmt.Errorf("querying NFS use: %w", err)
	}
	defer rows.Close()
	var out []NFSUse
	for rows.Next() {
		var u NFSUse
		var ms int64
		if err := rows.Scan(&u.Host, &u.Export, &ms); err != nil {
			return nil, fmt.Errorf("reading NFS use: %w", err)
		}
		u.Seen = int2time(ms)
		out = append(out, u)
	}
	return out, rows.Err()
}
