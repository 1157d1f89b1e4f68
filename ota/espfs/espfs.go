// Package espfs is the EFI system partition as OTA install, commit and
// rollback see it: a small file tree whose durability is explicit. A file's
// bytes are durable when WriteFile returns; a change to a directory (a new,
// renamed or removed name) only once SyncDir of that directory returns. Code
// that keeps the appliance bootable orders its steps by those two promises,
// and the crash tests (package ota/internal/crashfs) drop whatever was not yet
// durable to check it.
package espfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// FS is an ESP. Names are slash-separated and relative to its root
// ("loader/entries/kiln-1.conf").
type FS interface {
	// ReadDir lists the file names (not directories) in dir, sorted; a
	// missing dir is an error wrapping fs.ErrNotExist.
	ReadDir(dir string) ([]string, error)
	ReadFile(name string) ([]byte, error)
	// WriteFile creates or truncates name, writes r to it and makes the bytes
	// durable (fsync) before returning the count.
	WriteFile(name string, r io.Reader) (int64, error)
	// Rename replaces newname with oldname (same directory tree). When it
	// returns, newname is durable with its bytes; the removal of oldname
	// only after SyncDir.
	Rename(oldname, newname string) error
	// Remove removes a file; a missing file is not an error.
	Remove(name string) error
	// MkdirAll creates dir and its parents.
	MkdirAll(dir string) error
	// SyncDir makes the directory's entries durable.
	SyncDir(dir string) error
}

// Dir is a mounted ESP (/boot/efi).
type Dir struct {
	Root string
}

func (d Dir) path(name string) (string, error) {
	clean := path.Clean("/" + name)
	if clean == "/" || strings.Contains(name, "\\") || clean[1:] != strings.TrimPrefix(name, "/") {
		return "", fmt.Errorf("esp path %q is not a clean relative path", name)
	}
	return filepath.Join(d.Root, filepath.FromSlash(clean[1:])), nil
}

// ReadDir implements FS.
func (d Dir) ReadDir(dir string) ([]string, error) {
	p, err := d.path(dir)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// ReadFile implements FS.
func (d Dir) ReadFile(name string) ([]byte, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// WriteFile implements FS.
func (d Dir) WriteFile(name string, r io.Reader) (int64, error) {
	p, err := d.path(name)
	if err != nil {
		return 0, err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("writing %s: %w", p, err)
	}
	return n, nil
}

// Rename implements FS.
func (d Dir) Rename(oldname, newname string) error {
	o, err := d.path(oldname)
	if err != nil {
		return err
	}
	n, err := d.path(newname)
	if err != nil {
		return err
	}
	if err := os.Rename(o, n); err != nil {
		return err
	}
	// On vfat the new directory entry gets the file's size and first
	// cluster only when the inode is written back; syncing the directory
	// alone makes a zero-length entry durable (measured: a blessed boot
	// entry came back empty after a power cut 3 s later). Fsync the file.
	f, err := os.Open(n)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s after renaming it: %w", n, err)
	}
	return nil
}

// Remove implements FS.
func (d Dir) Remove(name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// MkdirAll implements FS.
func (d Dir) MkdirAll(dir string) error {
	p, err := d.path(dir)
	if err != nil {
		return err
	}
	return os.MkdirAll(p, 0o755)
}

// SyncDir implements FS.
func (d Dir) SyncDir(dir string) error {
	p, err := d.path(dir)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", p, err)
	}
	return nil
}

// ReplaceFile writes name durably: the bytes go to name+".new" (durable),
// which is then renamed over name, and the directory is synced. After a
// crash name holds the old or the new bytes — or, on FAT, when the crash
// falls inside the rename, nothing or an empty file, which callers must
// survive (they never remove the old state before ReplaceFile returned).
func ReplaceFile(f FS, name string, r io.Reader) (int64, error) {
	tmp := name + ".new"
	n, err := f.WriteFile(tmp, r)
	if err != nil {
		f.Remove(tmp)
		return n, err
	}
	if err := f.Rename(tmp, name); err != nil {
		return n, fmt.Errorf("renaming %s to %s: %w", tmp, path.Base(name), err)
	}
	if err := f.SyncDir(path.Dir(name)); err != nil {
		return n, err
	}
	return n, nil
}
