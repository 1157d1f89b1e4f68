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

	"kiln.dev/kiln/internal/atomicfile"
	"kiln.dev/kiln/services/store"
)

// ErrInUse: the target state directory holds an appliance's data; restore
// replaces it only with Force.
var ErrInUse = errors.New("the state directory is in use")

// Target is where Restore puts a backup.
type Target struct {
	// StateDir is replaced by the backup's state; the old one is kept as
	// StateDir.before-restore-<time>.
	StateDir string
	// ConfigFile receives the backup's config (the old one is kept beside it
	// as <name>.before-restore-<time>); empty leaves the config alone.
	ConfigFile string
	// Force replaces a state directory that is in use (see InUse).
	Force bool
	Now   time.Time
}

// Result says what Restore did.
type Result struct {
	Manifest Manifest
	// OldState and OldConfig are where the replaced files were kept ("" if
	// there were none).
	OldState, OldConfig string
	// Config reports that the backup held a config file and it was restored.
	Config bool
}

// Restore decrypts the backup in r into a staging directory beside
// t.StateDir, verifies every member against the manifest and the database
// with PRAGMA integrity_check, and only then moves the current state (and
// config) aside and the restored one into place. Any failure before the
// move leaves the current state untouched and removes the staging copy.
// Services must not be running on t.StateDir.
func Restore(ctx context.Context, r io.Reader, key Key, t Target) (Result, error) {
	stateDir := filepath.Clean(t.StateDir)
	parent := filepath.Dir(stateDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return Result{}, fmt.Errorf("restore: %w", err)
	}
	stamp := t.Now.UTC().Format("20060102T150405Z")
	staging, err := os.MkdirTemp(parent, "."+filepath.Base(stateDir)+".restore-")
	if err != nil {
		return Result{}, fmt.Errorf("restore: making the staging directory: %w", err)
	}
	defer os.RemoveAll(staging)

	m, err := extract(ctx, r, key, staging)
	if err != nil {
		return Result{}, fmt.Errorf("restore: %w; nothing was changed", err)
	}
	if err := verifyDatabase(ctx, filepath.Join(staging, "state", store.FileName)); err != nil {
		return Result{}, fmt.Errorf("restore: %w; nothing was changed", err)
	}
	if !t.Force {
		if err := checkUnused(ctx, stateDir); err != nil {
			return Result{}, fmt.Errorf("restore: %w; nothing was changed", err)
		}
	}

	res := Result{Manifest: m}
	newConfig := filepath.Join(staging, filepath.FromSlash(configMember))
	if _, err := os.Stat(newConfig); err == nil && t.ConfigFile != "" {
		// Stage the config beside its destination first: that directory
		// may be on another file system than the state.
		staged, err := copyBeside(newConfig, t.ConfigFile)
		if err != nil {
			return Result{}, fmt.Errorf("restore: staging the config: %w; nothing was changed", err)
		}
		defer os.Remove(staged)
		if res.OldState, err = swap(stateDir, filepath.Join(staging, "state"), stamp); err != nil {
			return Result{}, fmt.Errorf("restore: %w", err)
		}
		if res.OldConfig, err = swap(t.ConfigFile, staged, stamp); err != nil {
			return res, fmt.Errorf("restore: the state was restored but not the config: %w; the backup's config is in %s", err, staged)
		}
		res.Config = true
	} else if res.OldState, err = swap(stateDir, filepath.Join(staging, "state"), stamp); err != nil {
		return Result{}, fmt.Errorf("restore: %w", err)
	}
	if res.OldState != "" {
		// Earlier backups stay with the appliance, not with the old state.
		old := filepath.Join(res.OldState, BackupDirName)
		if _, err := os.Stat(old); err == nil {
			if err := os.Rename(old, filepath.Join(stateDir, BackupDirName)); err != nil {
				return res, fmt.Errorf("restore: the state was restored; moving earlier backups from %s: %w", old, err)
			}
		}
	}
	return res, nil
}

// swap moves cur (if it exists) to cur.before-restore-<stamp> and next to
// cur, syncing the directory. It returns where cur went.
func swap(cur, next, stamp string) (string, error) {
	var old string
	if _, err := os.Lstat(cur); err == nil {
		old = cur + ".before-restore-" + stamp
		if err := os.Rename(cur, old); err != nil {
			return "", fmt.Errorf("moving %s aside (is it a mount point? restore into a directory on it instead): %w", cur, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := os.Rename(next, cur); err != nil {
		if old != "" {
			if rerr := os.Rename(old, cur); rerr != nil {
				return old, fmt.Errorf("moving the restored copy into %s: %w (and putting the old one back: %v; it is in %s)", cur, err, rerr, old)
			}
		}
		return "", fmt.Errorf("moving the restored copy into %s: %w; the old one is back in place", cur, err)
	}
	return old, atomicfile.SyncDir(filepath.Dir(cur))
}

// copyBeside copies src to a temporary file in dst's directory.
func copyBeside(src, dst string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", err
	}
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".restore-")
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Chmod(0o600)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out.Name())
		return "", err
	}
	return out.Name(), nil
}

// extract reads the backup into dir (members below dir/state and
// dir/config) and checks them against the manifest.
func extract(ctx context.Context, r io.Reader, key Key, dir string) (Manifest, error) {
	plain, err := key.decrypt(r)
	if err != nil {
		return Manifest{}, err
	}
	gz, err := gzip.NewReader(plain)
	if err != nil {
		return Manifest{}, damaged(err)
	}
	tr := tar.NewReader(gz)
	var hdr Header
	var m *Manifest
	got := map[string]File{}
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return Manifest{}, err
		}
		th, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Manifest{}, damaged(err)
		}
		if m != nil {
			return Manifest{}, fmt.Errorf("%w: member %q after the manifest", ErrNotBackup, th.Name)
		}
		switch {
		case i == 0:
			if th.Name != headerName {
				return Manifest{}, fmt.Errorf("%w: the first member is %q, want %s", ErrNotBackup, th.Name, headerName)
			}
			if err := readJSON(tr, &hdr); err != nil {
				return Manifest{}, err
			}
			if err := checkHeader(hdr); err != nil {
				return Manifest{}, err
			}
		case th.Name == manifestName:
			m = new(Manifest)
			if err := readJSON(tr, m); err != nil {
				return Manifest{}, err
			}
		default:
			f, err := extractMember(th, tr, dir)
			if err != nil {
				return Manifest{}, err
			}
			if f != nil {
				if _, dup := got[f.Name]; dup {
					return Manifest{}, fmt.Errorf("%w: member %q appears twice", ErrNotBackup, f.Name)
				}
				got[f.Name] = *f
			}
		}
	}
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return Manifest{}, damaged(err)
	}
	if _, err := io.Copy(io.Discard, plain); err != nil {
		return Manifest{}, damaged(err)
	}
	if m == nil {
		return Manifest{}, fmt.Errorf("%w: it ends before its manifest", ErrDamaged)
	}
	if m.Header != hdr {
		return Manifest{}, fmt.Errorf("%w: the manifest's header differs from the first member's", ErrDamaged)
	}
	if err := checkFiles(m.Files, got); err != nil {
		return Manifest{}, err
	}
	return *m, nil
}

func damaged(err error) error {
	if errors.Is(err, ErrDamaged) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrDamaged, err)
}

// maxJSON bounds the header and manifest members.
const maxJSON = 64 << 20

func readJSON(r io.Reader, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, maxJSON+1))
	if err != nil {
		return damaged(err)
	}
	if len(b) > maxJSON {
		return fmt.Errorf("%w: a JSON member is over %d bytes", ErrNotBackup, maxJSON)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrNotBackup, err)
	}
	return nil
}

func checkHeader(h Header) error {
	if h.Format != "kiln-backup" {
		return fmt.Errorf("%w: format %q, want kiln-backup", ErrNotBackup, h.Format)
	}
	if h.Version < 1 || h.Version > FormatVersion {
		return fmt.Errorf("backup format version %d is newer than this kiln reads (%d): restore with kiln %s or newer", h.Version, FormatVersion, h.Kiln)
	}
	if h.Schema > store.SchemaVersion() {
		return fmt.Errorf("%w: the backup's database is at schema %d, this kiln knows up to %d: restore with kiln %s or newer", store.ErrSchemaNewer, h.Schema, store.SchemaVersion(), h.Kiln)
	}
	return nil
}

// extractMember writes one member below dir. Names must be clean, relative
// and under state/ or be config/kiln.yaml.
func extractMember(th *tar.Header, r io.Reader, dir string) (*File, error) {
	name := strings.TrimSuffix(th.Name, "/")
	if name == "" || path.Clean(name) != name || path.IsAbs(name) || strings.HasPrefix(name, "../") ||
		!(strings.HasPrefix(name, statePrefix) || name == configMember) {
		return nil, fmt.Errorf("%w: member name %q is outside state/ and config/kiln.yaml", ErrNotBackup, th.Name)
	}
	dst := filepath.Join(dir, filepath.FromSlash(name))
	perm := fs.FileMode(th.Mode).Perm()
	switch th.Typeflag {
	case tar.TypeDir:
		return nil, os.MkdirAll(dst, perm|0o700)
	case tar.TypeReg:
	default:
		return nil, fmt.Errorf("%w: member %q has type %q; backups hold only files and directories", ErrNotBackup, th.Name, th.Typeflag)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return nil, err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", name, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), r)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if errors.Is(err, ErrDamaged) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, damaged(err)
		}
		return nil, fmt.Errorf("writing %s: %w", name, err)
	}
	return &File{Name: name, Size: n, Mode: perm, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// checkFiles compares the extracted files with the manifest.
func checkFiles(want []File, got map[string]File) error {
	seen := map[string]bool{}
	for _, w := range want {
		g, ok := got[w.Name]
		if !ok {
			return fmt.Errorf("%w: %s is in the manifest but not in the archive", ErrDamaged, w.Name)
		}
		if g.Size != w.Size || g.SHA256 != w.SHA256 {
			return fmt.Errorf("%w: %s does not match its manifest entry (size %d, want %d)", ErrDamaged, w.Name, g.Size, w.Size)
		}
		seen[w.Name] = true
	}
	for name := range got {
		if !seen[name] {
			return fmt.Errorf("%w: %s is in the archive but not in the manifest", ErrDamaged, name)
		}
	}
	if !seen[statePrefix+store.FileName] {
		return fmt.Errorf("%w: it holds no database (%s%s)", ErrNotBackup, statePrefix, store.FileName)
	}
	return nil
}

// verifyDatabase opens the restored database (migrating it if it is older)
// and checks its integrity.
func verifyDatabase(ctx context.Context, path string) error {
	st, err := store.Open(ctx, path)
	if err != nil {
		return fmt.Errorf("the restored database does not open: %w", err)
	}
	defer st.Close()
	problems, err := st.IntegrityCheck(ctx)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: the database fails PRAGMA integrity_check: %s", ErrDamaged, strings.Join(problems, "; "))
	}
	return nil
}

// InUse reports why the state directory holds an appliance's data: any
// host, lease or vetting run, or a user besides the first-boot admin. A
// missing or empty directory, or one with only what a first start makes
// (keys, certificate, the admin), is not in use.
func InUse(ctx context.Context, stateDir string) (string, error) {
	db := store.Path(stateDir)
	if _, err := os.Stat(db); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	st, err := store.Open(ctx, db)
	if err != nil {
		return "", fmt.Errorf("reading the current database to see whether it is in use (use --force to replace it anyway): %w", err)
	}
	defer st.Close()
	rows, err := st.RowCounts(ctx)
	if err != nil {
		return "", err
	}
	var why []string
	for _, t := range []string{"hosts", "leases", "vet_runs"} {
		if rows[t] > 0 {
			why = append(why, fmt.Sprintf("%d %s", rows[t], t))
		}
	}
	if rows["users"] > 1 {
		why = append(why, fmt.Sprintf("%d users", rows["users"]))
	}
	return strings.Join(why, ", "), nil
}

func checkUnused(ctx context.Context, stateDir string) error {
	why, err := InUse(ctx, stateDir)
	if err != nil {
		return err
	}
	if why != "" {
		return fmt.Errorf("%w: %s holds %s; pass --force to replace it (it is kept as %s.before-restore-<time>)", ErrInUse, stateDir, why, stateDir)
	}
	return nil
}
