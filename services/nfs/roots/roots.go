// Package roots manages the root images diskless machines boot over NFS:
// versioned directory trees on the data partition, imported from a tar
// archive (plain, gzip, xz or zstd) or a squashfs image, checked to be a
// Linux root, and promoted or removed. An import is written in a staging
// directory outside the export root and renamed into place only when it is
// complete and valid, so no client ever sees a half-written root; a
// removal refuses what is promoted, pinned or in use.
package roots

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"kiln.dev/kiln/services/internal/exportname"
	"kiln.dev/kiln/services/nfs"
	"kiln.dev/kiln/services/store"
)

// Manager imports, promotes and removes root images.
type Manager struct {
	Store  *store.Store
	Layout nfs.Layout
	// Space returns the bytes an import may still write (default: the
	// export root's free space less a reserve for the database and logs).
	Space func() (int64, error)
}

// Imported is the result of an import.
type Imported struct {
	store.RootImage
	// Skipped counts device nodes and FIFOs left out (the client mounts
	// devtmpfs on /dev).
	Skipped int
}

// Import reads a root image from r (a tar stream, optionally gzip, xz or
// zstd compressed, or a squashfs image) as the next version of name, and
// promotes it when promote says so. source names the upload for people.
// Bad input, a full data partition or a clash leaves every stored version
// as it was.
func (m *Manager) Import(ctx context.Context, name string, r io.Reader, source string, promote bool) (Imported, error) {
	if !exportname.Valid(name) {
		return Imported{}, store.Errors{{Field: "name", Problem: fmt.Sprintf("%q is not a valid root image name (use %s)", name, exportname.Rule), Err: store.ErrInvalid}}
	}
	if err := m.Layout.Prepare(); err != nil {
		return Imported{}, err
	}
	tmp, err := os.MkdirTemp(m.Layout.Staging, name+"-")
	if err != nil {
		return Imported{}, fmt.Errorf("creating a staging directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return Imported{}, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Imported{}, err
	}
	defer root.Close()
	space := m.Space
	if space == nil {
		space = freeSpace(m.Layout.Exports)
	}
	w := &writer{root: root, space: space, sinceCheck: 64 << 20}

	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(512)
	switch k := sniff(head); k {
	case kindSquashfs:
		if err := w.fromSquashfs(tmp, br); err != nil {
			return Imported{}, invalid(err)
		}
	default:
		tr, done, err := decompress(br, k)
		if err != nil {
			return Imported{}, invalid(err)
		}
		err = w.extractTar(tr)
		done()
		if err != nil {
			return Imported{}, invalid(err)
		}
	}
	if err := ctx.Err(); err != nil {
		return Imported{}, err
	}
	if err := Validate(dir); err != nil {
		return Imported{}, invalid(err)
	}
	version, err := m.nextVersion(ctx, name)
	if err != nil {
		return Imported{}, err
	}
	final := m.Layout.RootDir(name, version)
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return Imported{}, err
	}
	if err := os.Rename(dir, final); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return Imported{}, store.Errors{{Field: "name", Problem: fmt.Sprintf("%s@%d is being imported at the same time; import again", name, version), Err: store.ErrConflict}}
		}
		return Imported{}, fmt.Errorf("moving the import into place: %w", err)
	}
	ri, err := m.Store.AddRootImage(ctx, store.RootImage{Name: name, Version: version, Promoted: promote,
		Size: w.n.Bytes, Files: w.n.Files, Source: source})
	if err != nil {
		os.RemoveAll(final) // never exported: it has no row
		return Imported{}, err
	}
	return Imported{RootImage: ri, Skipped: w.n.Skipped}, nil
}

// fromSquashfs stores the image in tmp, mounts it and copies its tree.
func (w *writer) fromSquashfs(tmp string, r io.Reader) error {
	file := filepath.Join(tmp, "image.squashfs")
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = w.copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("storing the squashfs image: %w", err)
	}
	w.sinceCheck = 64 << 20 // its copy needs as much again
	mnt := filepath.Join(tmp, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return err
	}
	unmount, err := mountSquashfs(file, mnt)
	if err != nil {
		return err
	}
	err = w.copyTree(mnt)
	if uerr := unmount(); err == nil && uerr != nil {
		err = fmt.Errorf("unmounting the squashfs image: %w", uerr)
	}
	return err
}

// invalid marks errors about the upload itself as the operator's to fix;
// a full data partition stays ErrDataFull.
func invalid(err error) error {
	if errors.Is(err, ErrDataFull) || errors.Is(err, context.Canceled) {
		return err
	}
	return store.Errors{{Field: "image", Problem: err.Error(), Err: store.ErrInvalid}}
}

// nextVersion is one more than any version of name stored or on disk (a
// directory left by an import that stopped between rename and record).
func (m *Manager) nextVersion(ctx context.Context, name string) (int, error) {
	v, err := m.Store.NextRootVersion(ctx, name)
	if err != nil {
		return 0, err
	}
	entries, _ := os.ReadDir(filepath.Join(m.Layout.Exports, "roots", name))
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && n >= v {
			v = n + 1
		}
	}
	return v, nil
}

// Promote makes ref ("name@N") the version hosts naming name boot next.
func (m *Manager) Promote(ctx context.Context, ref string) (store.RootImage, error) {
	name, v, ok := exportname.ParseRef(ref)
	if !ok || v == 0 {
		return store.RootImage{}, store.Errors{{Field: "version", Problem: fmt.Sprintf("%q does not name a version (use NAME@VERSION, as kiln roots list shows)", ref), Err: store.ErrInvalid}}
	}
	return m.Store.PromoteRootImage(ctx, name, v)
}

// Remove forgets ref ("name@N") and deletes its files. The promoted
// version, a version a host pins and (unless force) a version a client
// used within nfs.InUse are refused.
func (m *Manager) Remove(ctx context.Context, ref string, force bool) error {
	name, v, ok := exportname.ParseRef(ref)
	if !ok || v == 0 {
		return store.Errors{{Field: "version", Problem: fmt.Sprintf("%q does not name a version (use NAME@VERSION, as kiln roots list shows)", ref), Err: store.ErrInvalid}}
	}
	if err := m.Store.DeleteRootImage(ctx, name, v, nfs.InUse, force); err != nil {
		return err
	}
	// Out of the export root at once (one rename), then deleted.
	dir := m.Layout.RootDir(name, v)
	trash, err := os.MkdirTemp(m.Layout.Staging, "removed-")
	if err != nil {
		return fmt.Errorf("%s is forgotten but its files stay in %s: %w", ref, dir, err)
	}
	if err := os.Rename(dir, filepath.Join(trash, "root")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		os.Remove(trash)
		return fmt.Errorf("%s is forgotten but its files stay in %s: %w", ref, dir, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("%s is removed but deleting its files in %s failed: %w", ref, trash, err)
	}
	os.Remove(filepath.Dir(dir)) // the name's directory, when it was the last version
	return nil
}
