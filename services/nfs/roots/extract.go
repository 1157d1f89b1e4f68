package roots

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// ErrDataFull marks an import stopped because the data partition would
// fill up; what was written is removed and nothing exported changes.
var ErrDataFull = errors.New("the data partition is full")

// Counts is what an extraction wrote.
type Counts struct {
	Bytes, Files int64
	// Skipped are device nodes and FIFOs left out: the diskless client
	// mounts devtmpfs on /dev.
	Skipped int
}

// kind of an upload, from its first bytes.
type kind int

const (
	kindTar kind = iota
	kindGzip
	kindXZ
	kindZstd
	kindSquashfs
)

func sniff(b []byte) kind {
	switch {
	case len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		return kindGzip
	case len(b) >= 6 && string(b[:6]) == "\xfd7zXZ\x00":
		return kindXZ
	case len(b) >= 4 && string(b[:4]) == "\x28\xb5\x2f\xfd":
		return kindZstd
	case len(b) >= 4 && string(b[:4]) == "hsqs":
		return kindSquashfs
	}
	return kindTar
}

// decompress returns the tar stream inside r (plain, gzip, xz or zstd).
func decompress(r *bufio.Reader, k kind) (io.Reader, func(), error) {
	switch k {
	case kindGzip:
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("reading gzip: %w", err)
		}
		return z, func() { z.Close() }, nil
	case kindXZ:
		z, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("reading xz: %w", err)
		}
		return z, func() {}, nil
	case kindZstd:
		z, err := zstd.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("reading zstd: %w", err)
		}
		return z, z.Close, nil
	}
	return r, func() {}, nil
}

// writer puts entries below an os.Root: no name, link or symbolic link can
// place anything outside it, whatever the archive says.
type writer struct {
	root *os.Root
	// space reports the bytes the data partition may still take.
	space func() (int64, error)
	n     Counts
	dirs  []dirTime
	// sinceCheck counts bytes written since space was last asked.
	sinceCheck int64
}

type dirTime struct {
	name string
	t    time.Time
}

// cleanName turns an archive name into a path below the root, or says why not.
func cleanName(name string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	n = strings.TrimLeft(n, "/")
	if n == "" || n == "." {
		return ".", nil
	}
	c := path.Clean(n)
	if c == ".." || strings.HasPrefix(c, "../") || strings.Contains(name, "\x00") {
		return "", fmt.Errorf("entry %q leads outside the root", name)
	}
	return c, nil
}

// add writes one entry; body is its content for regular files.
func (w *writer) add(h *tar.Header, body io.Reader) error {
	name, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	// tar keeps setuid/setgid/sticky in the low Mode bits (c_ISUID…).
	mode := fs.FileMode(h.Mode).Perm()
	if h.Mode&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if h.Mode&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if h.Mode&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	if dir := path.Dir(name); dir != "." {
		if err := w.root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if name != "." {
			if err := w.root.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("entry %q: %w", h.Name, err)
			}
		}
		w.dirs = append(w.dirs, dirTime{name, h.ModTime})
	case tar.TypeReg, tar.TypeRegA:
		w.root.Remove(name) // a later entry replaces an earlier one, as tar does
		f, err := w.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
		n, err := w.copy(f, body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
		w.n.Bytes += n
	case tar.TypeSymlink:
		w.root.Remove(name)
		if err := w.root.Symlink(h.Linkname, name); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
		w.n.Files++
		return w.root.Lchown(name, h.Uid, h.Gid)
	case tar.TypeLink:
		old, err := cleanName(h.Linkname)
		if err != nil {
			return fmt.Errorf("hard link %q: %w", h.Name, err)
		}
		w.root.Remove(name)
		if err := w.root.Link(old, name); err != nil {
			return fmt.Errorf("hard link %q to %q: %w", h.Name, h.Linkname, err)
		}
		w.n.Files++
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		w.n.Skipped++
		return nil
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("entry %q: unsupported type %q", h.Name, h.Typeflag)
	}
	w.n.Files++
	if err := w.root.Lchown(name, h.Uid, h.Gid); err != nil {
		return fmt.Errorf("entry %q: %w", h.Name, err)
	}
	// After chown, which clears setuid/setgid.
	if err := w.root.Chmod(name, mode); err != nil {
		return fmt.Errorf("entry %q: %w", h.Name, err)
	}
	if h.Typeflag != tar.TypeDir && !h.ModTime.IsZero() {
		return w.root.Chtimes(name, h.ModTime, h.ModTime)
	}
	return nil
}

// copy writes body to f, asking for space every 64 MiB.
func (w *writer) copy(f *os.File, body io.Reader) (int64, error) {
	var total int64
	for {
		if w.sinceCheck >= 64<<20 {
			free, err := w.space()
			if err != nil {
				return total, err
			}
			if free < 64<<20 {
				return total, ErrDataFull
			}
			w.sinceCheck = 0
		}
		n, err := io.CopyN(f, body, 64<<20-w.sinceCheck)
		total += n
		w.sinceCheck += n
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if errors.Is(err, syscall.ENOSPC) {
			return total, ErrDataFull
		}
		if err != nil {
			return total, err
		}
	}
}

// finish sets the directories' times, which their entries changed.
func (w *writer) finish() error {
	for i := len(w.dirs) - 1; i >= 0; i-- {
		d := w.dirs[i]
		if !d.t.IsZero() {
			if err := w.root.Chtimes(d.name, d.t, d.t); err != nil {
				return err
			}
		}
	}
	return nil
}

// extractTar writes the tar stream r below w's root.
func (w *writer) extractTar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return w.finish()
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w", err)
		}
		if err := w.add(h, tr); err != nil {
			return err
		}
	}
}

// freeSpace returns the bytes unprivileged writers may still put on the
// file system of dir, less a reserve so the machine database and logs keep
// room: 5% of the file system, at least 256 MiB.
func freeSpace(dir string) func() (int64, error) {
	return func() (int64, error) {
		var s unix.Statfs_t
		if err := unix.Statfs(dir, &s); err != nil {
			return 0, fmt.Errorf("reading the free space of %s: %w", dir, err)
		}
		total := int64(s.Blocks) * s.Bsize
		reserve := max(total/20, 256<<20)
		return int64(s.Bavail)*s.Bsize - reserve, nil
	}
}
