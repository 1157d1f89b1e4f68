package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"kiln.dev/kiln/services/store"
)

// FormatVersion is the version of the payload layout (kiln-backup.json and
// manifest.json); restore refuses newer ones.
const FormatVersion = 1

// Member names in the payload.
const (
	headerName   = "kiln-backup.json"
	manifestName = "manifest.json"
	configMember = "config/kiln.yaml"
	statePrefix  = "state/"
)

// Header opens the payload: enough to refuse an archive this kiln cannot
// read before reading the rest.
type Header struct {
	Format   string    `json:"format"` // "kiln-backup"
	Version  int       `json:"version"`
	Kiln     string    `json:"kiln_version"`
	Schema   int       `json:"schema"` // the database's migration level
	Created  time.Time `json:"created"`
	Hostname string    `json:"hostname,omitempty"`
}

// File is one member of the archive.
type File struct {
	Name   string      `json:"name"`
	Size   int64       `json:"size"`
	Mode   fs.FileMode `json:"mode"`
	SHA256 string      `json:"sha256"`
}

// Manifest closes the payload.
type Manifest struct {
	Header
	Files []File `json:"files"`
	// Rows counts the database's rows by table at the snapshot.
	Rows map[string]int64 `json:"rows"`
}

// Excluded lists what of the state directory a backup leaves out, and why
// (docs/operations.md repeats it).
var Excluded = []struct{ Path, Why string }{
	{"kiln.db", "copied as a consistent snapshot instead of the live file"},
	{"kiln.db-wal", "part of the live database; the snapshot has no WAL"},
	{"kiln.db-shm", "part of the live database"},
	{"kiln.db-journal", "part of the live database"},
	{"run", "runtime sockets of kiln serve, remade at start"},
	{"ota/db-snapshot", "the OTA rollback copy of the database; the backup has its own"},
	{"iscsi/volumes", "thin nodes' disk images (large; back them up from the nodes or the image files)"},
	{BackupDirName, "earlier backups"},
}

// excluded reports whether rel (slash-separated, relative to the state
// directory) is left out.
func excluded(rel string) bool {
	for _, e := range Excluded {
		if rel == e.Path || strings.HasPrefix(rel, e.Path+"/") {
			return true
		}
	}
	return strings.HasPrefix(path.Base(rel), ".kiln-backup-")
}

// Source is what Create backs up.
type Source struct {
	// StateDir is the state directory; Store its open database.
	StateDir string
	Store    *store.Store
	// ConfigFile is the config file to include; empty or missing leaves it out.
	ConfigFile string
	// Version is kiln's version, recorded in the header.
	Version  string
	Hostname string
	Now      time.Time
}

// Create writes an encrypted backup of src to w and returns its manifest.
// The database snapshot is staged in the state directory (same disk) and
// removed afterwards. An error leaves w with a partial file that no restore
// accepts (it lacks the final chunk or the manifest).
func Create(ctx context.Context, w io.Writer, src Source, key Key) (Manifest, error) {
	tmp, err := os.MkdirTemp(src.StateDir, ".kiln-backup-")
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: staging the database snapshot: %w", err)
	}
	defer os.RemoveAll(tmp)
	snap := filepath.Join(tmp, store.FileName)
	rows, err := src.Store.SnapshotTo(ctx, snap)
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	m := Manifest{
		Header: Header{Format: "kiln-backup", Version: FormatVersion, Kiln: src.Version,
			Schema: store.SchemaVersion(), Created: src.Now.UTC(), Hostname: src.Hostname},
		Rows: rows,
	}

	enc, err := key.encrypt(w)
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	gz := gzip.NewWriter(enc)
	tw := &tarWriter{tw: tar.NewWriter(gz), now: m.Created}
	if err := tw.json(headerName, m.Header); err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	if src.ConfigFile != "" {
		if err := tw.file(configMember, src.ConfigFile, &m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Manifest{}, fmt.Errorf("backup: the config file: %w", err)
		}
	}
	if err := tw.file(statePrefix+store.FileName, snap, &m); err != nil {
		return Manifest{}, fmt.Errorf("backup: the database snapshot: %w", err)
	}
	if err := walkState(ctx, src.StateDir, tw, &m); err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	if err := tw.json(manifestName, m); err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	for _, c := range []io.Closer{tw.tw, gz, enc} {
		if err := c.Close(); err != nil {
			return Manifest{}, fmt.Errorf("backup: finishing the archive: %w", err)
		}
	}
	return m, nil
}

// walkState adds every regular file and directory of dir that is not
// excluded, in lexical order.
func walkState(ctx context.Context, dir string, tw *tarWriter, m *Manifest) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != dir {
				return nil // removed while we walked
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if excluded(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case d.IsDir():
			info, err := d.Info()
			if err != nil {
				return err
			}
			return tw.dir(statePrefix+rel, info.Mode().Perm())
		case d.Type().IsRegular():
			err := tw.file(statePrefix+rel, p, m)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		default:
			return nil // sockets, FIFOs, symlinks: made at runtime, not state
		}
	})
}

// tarWriter writes members and records them in the manifest.
type tarWriter struct {
	tw  *tar.Writer
	now time.Time
}

func (t *tarWriter) json(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if err := t.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: t.now, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = t.tw.Write(b)
	return err
}

func (t *tarWriter) dir(name string, perm fs.FileMode) error {
	return t.tw.WriteHeader(&tar.Header{Name: name + "/", Mode: int64(perm), ModTime: t.now, Typeflag: tar.TypeDir})
}

// file copies the file at p as member name, hashing it on the way. A file
// that shrinks while it is read is an error (retry the backup); growth after
// the size was taken is not copied.
func (t *tarWriter) file(name, p string, m *Manifest) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	hdr := &tar.Header{Name: name, Mode: int64(info.Mode().Perm()), Size: info.Size(), ModTime: info.ModTime(), Typeflag: tar.TypeReg}
	if err := t.tw.WriteHeader(hdr); err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(t.tw, h), f, info.Size()); err != nil {
		return fmt.Errorf("copying %s (did it shrink while being read? run the backup again): %w", p, err)
	}
	m.Files = append(m.Files, File{Name: name, Size: info.Size(), Mode: info.Mode().Perm(), SHA256: hex.EncodeToString(h.Sum(nil))})
	return nil
}

// BackupDirName is the directory in the state directory that scheduled
// backups go to.
const BackupDirName = "backups"
