package store

import (
	"context"
	"crypto/cipher"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// FileName is the database file inside the state directory.
const FileName = "kiln.db"

// Path returns the database path for a state directory.
func Path(stateDir string) string { return filepath.Join(stateDir, FileName) }

// Sentinel errors callers branch on.
var (
	// ErrNotFound: no such host, lease or MAC.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: a value is malformed (see the FieldError for which one).
	ErrInvalid = errors.New("invalid")
	// ErrConflict: a value is already used by another row (name, MAC, address).
	ErrConflict = errors.New("conflict")
	// ErrSchemaNewer: the database was migrated by a newer kiln.
	ErrSchemaNewer = errors.New("database schema is newer than this kiln")
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Store is an open machine database. It is safe for concurrent use.
type Store struct {
	db  *sql.DB
	now func() time.Time
	// aead seals secrets kiln reads back (see KeyFileName).
	aead cipher.AEAD
	// writeMu serializes this process's writes. Without it goroutines
	// writing at once wait in SQLite's busy handler, which sleeps in steps of
	// up to 100 ms; the mutex hands the write lock over as soon as it is
	// free. Other processes still meet the busy timeout.
	writeMu sync.Mutex
}

// Option configures Open.
type Option func(*Store)

// WithClock sets the clock used for timestamps (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// FileMode is the mode of the database and its -wal and -shm files: they
// hold password hashes, run tokens and SSH keys, so only root reads them.
const FileMode = 0o600

// Open opens (creating if needed) the database at path and migrates it.
// The database files are FileMode whatever the umask, and files an older
// kiln left readable are made so.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	if err := privateFiles(path); err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	s := &Store{db: db, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	if s.aead, err = loadKey(path); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := s.sealLegacy(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return s, nil
}

// privateFiles creates the database file with FileMode if it is missing
// (SQLite gives its -wal and -shm files the database file's mode) and
// tightens the mode of every one of the three that exists.
func privateFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return err
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, FileMode); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// migration is one embedded schema step.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in order; numbering must be 1, 2, 3 …
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{v, name, string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %04d_%s: numbers must run 1, 2, 3 … without gaps", m.version, m.name)
		}
	}
	return ms, nil
}

// SchemaVersion returns the highest migration this code knows.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		return 0
	}
	return len(ms)
}

func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("creating schema_migrations: %w", err)
		}
		var cur int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
			return fmt.Errorf("reading schema version: %w", err)
		}
		if cur > len(ms) {
			return fmt.Errorf("%w: the database is at schema %d, this kiln knows up to %d; run the newer kiln (roll back the update) or restore a backup of kiln.db", ErrSchemaNewer, cur, len(ms))
		}
		for _, m := range ms[cur:] {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("applying migration %04d_%s: %w", m.version, m.name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?, ?, ?)`,
				m.version, m.name, ms2int(s.now())); err != nil {
				return fmt.Errorf("recording migration %04d_%s: %w", m.version, m.name, err)
			}
		}
		return nil
	})
}

// tx runs fn in one write transaction, rolled back if fn fails.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("starting transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// bump increments the change counter inside a write transaction.
func bump(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `UPDATE kiln_meta SET value = value + 1 WHERE key = 'data_version'`); err != nil {
		return fmt.Errorf("bumping data version: %w", err)
	}
	return nil
}

// DataVersion returns a counter that changes whenever hosts, their MACs, or the
// address, owner or name of a lease change. Cheap enough to poll every second.
func (s *Store) DataVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM kiln_meta WHERE key = 'data_version'`).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading data version: %w", err)
	}
	return v, nil
}

func ms2int(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func int2time(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
