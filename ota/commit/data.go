package commit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"kiln.dev/kiln/internal/atomicfile"
	"kiln.dev/kiln/ota/slots"
)

// Data is the database kept across versions: files in StateDir that are
// copied together (SQLite's main file and WAL; the -shm index is rebuilt).
type Data struct {
	StateDir string
	// Files are the names to snapshot, e.g. kiln.db and kiln.db-wal; the
	// database's other companions (-shm, -journal) are removed on restore.
	Files []string
	// Drop are companions removed on restore (e.g. kiln.db-shm).
	Drop []string
}

// SnapshotDir is where the snapshot lives.
func (d Data) SnapshotDir() string { return filepath.Join(d.StateDir, "ota", "db-snapshot") }

// PrepareData keeps the database usable by the generation about to start
// (running), given the newest generation that ran on it (r.DataGeneration):
//
//   - a newer generation starting for the first time: snapshot the database
//     (tagged with the generation that wrote it), then let it migrate;
//   - an older generation starting after a newer one (fallback or
//     rollback): restore the snapshot that generation left; what the newer
//     generation wrote is discarded (docs/ota.md);
//   - the same generation: nothing.
//
// It runs before any service opens the database. It returns the updated
// record and what it did.
func PrepareData(r slots.Record, running int, d Data, now time.Time) (slots.Record, string, error) {
	r = r.Clone()
	switch {
	case r.DataGeneration == 0:
		r.DataGeneration = running
		return r, "", nil
	case r.DataGeneration == running:
		return r, "", nil
	case r.DataGeneration < running:
		if err := snapshot(d); err != nil {
			return r, "", fmt.Errorf("snapshotting the database before generation %d migrates it: %w (a rollback to generation %d will find a database it may refuse)", running, err, r.DataGeneration)
		}
		r.Snapshot = &slots.Snapshot{Generation: r.DataGeneration, Dir: d.SnapshotDir(), At: now}
		did := fmt.Sprintf("snapshotted the database of generation %d before generation %d starts", r.DataGeneration, running)
		r.DataGeneration = running
		return r, did, nil
	}
	// An older generation runs on data a newer one used.
	if r.Snapshot == nil || r.Snapshot.Generation != running {
		have := "none"
		if r.Snapshot != nil {
			have = fmt.Sprintf("one of generation %d", r.Snapshot.Generation)
		}
		return r, "", fmt.Errorf("the database was last used by generation %d, newer than this generation %d, and there is no snapshot of generation %d's database (%s): services may refuse it; restore a backup, or factory-reset the data partition from the recovery menu",
			r.DataGeneration, running, running, have)
	}
	if err := restore(d); err != nil {
		return r, "", fmt.Errorf("restoring generation %d's database snapshot: %w", running, err)
	}
	did := fmt.Sprintf("restored the database snapshot of generation %d (changes made under generation %d are discarded)", running, r.DataGeneration)
	r.DataGeneration = running
	return r, did, nil
}

// snapshot copies the database files into the snapshot dir, replacing a
// previous snapshot only once the new one is complete.
func snapshot(d Data) error {
	dir := d.SnapshotDir()
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	for _, n := range d.Files {
		err := copyFile(filepath.Join(d.StateDir, n), filepath.Join(tmp, n))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
	}
	if err := atomicfile.SyncDir(tmp); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(dir))
}

// restore replaces the database files with the snapshot's.
func restore(d Data) error {
	dir := d.SnapshotDir()
	if _, err := os.Stat(dir); err != nil {
		return err
	}
	for _, n := range append(append([]string(nil), d.Files...), d.Drop...) {
		if err := os.Remove(filepath.Join(d.StateDir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	for _, n := range d.Files {
		tmp := filepath.Join(d.StateDir, n+".restore")
		err := copyFile(filepath.Join(dir, n), tmp)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(d.StateDir, n)); err != nil {
			return err
		}
	}
	return atomicfile.SyncDir(d.StateDir)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
