// Package atomicfile replaces files so that a crash or power cut at any
// moment leaves either the old or the new bytes under the name, never a
// mixture or a truncated file: the bytes go to a temporary file in the same
// directory, which is synced, renamed over the name, and the directory is
// synced so that the rename itself is on disk.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// WriteFile replaces path with data, created with mode (before the umask,
// as os.WriteFile).
func WriteFile(path string, data []byte, mode fs.FileMode) error {
	return Write(path, mode, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// Write replaces path with what fill writes to f, a new file opened for
// reading and writing in path's directory and created with mode (before the
// umask). When fill or any later step fails, path is left as it was and the
// temporary file is removed.
func Write(path string, mode fs.FileMode, fill func(f *os.File) error) (err error) {
	f, err := createTemp(path, mode)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("writing %s: %w", path, err)
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// createTemp creates a new hidden file next to path. It does not use
// os.CreateTemp, which always creates 0600 and ignores the umask.
func createTemp(path string, mode fs.FileMode) (*os.File, error) {
	dir, base := filepath.Split(path)
	for range 100 {
		name := filepath.Join(dir, "."+base+".tmp"+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, mode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("no unused temporary name next to %s", path)
}

// SyncDir fsyncs directory dir, which makes renames and new or removed
// names in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
