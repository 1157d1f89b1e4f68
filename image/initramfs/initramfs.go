// Package initramfs writes kiln's initramfs: a newc cpio archive, gzip-compressed,
// built from an in-memory file list so that the same inputs always give the same
// bytes (sorted paths, parent directories made explicit, fixed inode numbers,
// owner root, mtime 0).
package initramfs

import (
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// File is one archive member. Exactly one kind applies: a directory (Dir), a
// symlink (Link != ""), or a regular file (Data).
type File struct {
	Path string // absolute or relative; stored relative to /
	Mode uint32 // permission bits
	Data []byte
	Link string // symlink target
	Dir  bool
}

// Write writes the compressed archive of files to w. Parents of every path are
// added as 0755 directories when not listed.
func Write(w io.Writer, files []File) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("creating gzip writer: %w", err)
	}
	// The zero gzip header carries no name and mtime 0.
	if err := WriteCPIO(zw, files); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compressing initramfs: %w", err)
	}
	return nil
}

// WriteCPIO writes the uncompressed newc archive of files to w.
func WriteCPIO(w io.Writer, files []File) error {
	all, err := withParents(files)
	if err != nil {
		return err
	}
	rw := cpio.Newc.Writer(w)
	for i, f := range all {
		info := cpio.Info{Name: f.Path, Ino: uint64(i + 1), NLink: 1}
		var rec cpio.Record
		switch {
		case f.Dir:
			info.Mode = cpio.S_IFDIR | uint64(f.Mode&0o7777)
			info.NLink = 2
			rec = cpio.Record{Info: info}
		case f.Link != "":
			info.Mode = cpio.S_IFLNK | 0o777
			rec = cpio.StaticRecord([]byte(f.Link), info)
		default:
			info.Mode = cpio.S_IFREG | uint64(f.Mode&0o7777)
			rec = cpio.StaticRecord(f.Data, info)
		}
		if err := rw.WriteRecord(rec); err != nil {
			return fmt.Errorf("writing %s to the initramfs: %w", f.Path, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return fmt.Errorf("writing initramfs trailer: %w", err)
	}
	return nil
}

// withParents normalizes paths, rejects duplicates and escapes, adds missing
// parent directories and sorts so that every directory precedes its contents.
func withParents(files []File) ([]File, error) {
	byPath := map[string]File{}
	for _, f := range files {
		p := strings.TrimPrefix(path.Clean("/"+f.Path), "/")
		if p == "" || p == "." {
			return nil, fmt.Errorf("initramfs member %q: empty path", f.Path)
		}
		if _, dup := byPath[p]; dup {
			return nil, fmt.Errorf("initramfs member %q listed twice", p)
		}
		f.Path = p
		byPath[p] = f
	}
	for p := range byPath {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if prev, ok := byPath[d]; ok {
				if !prev.Dir {
					return nil, fmt.Errorf("initramfs member %q needs %q to be a directory", p, d)
				}
				continue
			}
			byPath[d] = File{Path: d, Mode: 0o755, Dir: true}
		}
	}
	out := make([]File, 0, len(byPath))
	for _, f := range byPath {
		out = append(out, f)
	}
	// Sorting by path puts "a" before "a/b": parents come first.
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}
