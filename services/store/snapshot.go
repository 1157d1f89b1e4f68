package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
)

// SnapshotTo writes a consistent copy of the whole database to path (which
// must not exist) while other connections keep reading and writing: SQLite's
// VACUUM INTO reads one transaction's view and writes a compact database
// without a WAL. The copy is FileMode. It returns the copy's row counts by
// table (see RowCounts), read from the copy so that they match it.
func (s *Store) SnapshotTo(ctx context.Context, path string) (map[string]int64, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("snapshot of the database: %s already exists", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("snapshot of the database: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("snapshot of the database to %s: %w", path, err)
	}
	if err := os.Chmod(path, FileMode); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("snapshot of the database: %w", err)
	}
	snap, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return nil, fmt.Errorf("reading the snapshot: %w", err)
	}
	defer snap.Close()
	counts, err := countRows(ctx, snap)
	if err != nil {
		return nil, fmt.Errorf("reading the snapshot: %w", err)
	}
	return counts, nil
}

// IntegrityCheck runs PRAGMA integrity_check and returns the problems it
// lists; none means the database file is sound.
func (s *Store) IntegrityCheck(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return nil, fmt.Errorf("checking database integrity: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, fmt.Errorf("checking database integrity: %w", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("checking database integrity: %w", err)
	}
	return problems, nil
}

// RowCounts returns the number of rows of every table, by table name. A
// backup records it so that a restore can show what it brings back.
func (s *Store) RowCounts(ctx context.Context) (map[string]int64, error) {
	return countRows(ctx, s.db)
}

func countRows(ctx context.Context, db *sql.DB) (map[string]int64, error) {
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
	if err != nil {
		return nil, fmt.Errorf("listing tables: %w", err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing tables: %w", err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing tables: %w", err)
	}
	sort.Strings(tables)
	counts := make(map[string]int64, len(tables))
	for _, t := range tables {
		var n int64
		q := `SELECT COUNT(*) FROM "` + strings.ReplaceAll(t, `"`, `""`) + `"`
		if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil {
			return nil, fmt.Errorf("counting rows of %s: %w", t, err)
		}
		counts[t] = n
	}
	return counts, nil
}
