package iscsi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/services/config"

	"kiln.dev/kiln/services/store"
)

// ErrQuota: the data partition cannot hold the volume even when every
// volume is written full.
var ErrQuota = errors.New("volume quota exceeded")

// Files keeps volume files below Dir: hosts/<host>/<name>.img for a
// host's volumes, golden/<name>.img for golden ones. Files are sparse: a
// volume takes space only as it is written.
type Files struct {
	Dir string
}

// Path is the file of host's volume name (host "": golden).
func (f Files) Path(host, name string) string {
	if host == "" {
		return filepath.Join(f.Dir, "golden", name+".img")
	}
	return filepath.Join(f.Dir, "hosts", host, name+".img")
}

// Create makes a sparse file of size at path; an existing file is refused.
// src, when not nil, is copied in first (a golden volume or a raw disk
// image), leaving its zero blocks as holes; it must not exceed size.
func (f Files) Create(ctx context.Context, path string, size int64, src io.Reader) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating volume directory: %w", err)
	}
	out, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("creating volume file: %w", err)
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if src != nil {
		n, err := copySparse(ctx, out, io.LimitReader(src, size+1))
		if err != nil {
			return fmt.Errorf("copying into the volume: %w", err)
		}
		if n > size {
			return fmt.Errorf("%w: size: the source is larger than %s; give the volume at least the source's size", store.ErrInvalid, Bytes(size))
		}
	}
	if err := out.Truncate(size); err != nil {
		return fmt.Errorf("sizing the volume: %w", err)
	}
	return out.Sync()
}

// copySparse copies src to dst in 1 MiB blocks, seeking over blocks of
// zeros so they stay holes, and returns the bytes read.
func copySparse(ctx context.Context, dst *os.File, src io.Reader) (int64, error) {
	const block = 1 << 20
	buf := make([]byte, block)
	zero := make([]byte, block)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		n, err := io.ReadFull(src, buf)
		if n > 0 {
			if !bytes.Equal(buf[:n], zero[:n]) {
				if _, werr := dst.WriteAt(buf[:n], off); werr != nil {
					return off, werr
				}
			}
			off += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return off, nil
		}
		if err != nil {
			return off, err
		}
	}
}

// Grow extends path to size (never shrinks).
func (f Files) Grow(path string, size int64) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("growing volume: %w", err)
	}
	if size < fi.Size() {
		return fmt.Errorf("growing volume %s to %d: it already has %d bytes", path, size, fi.Size())
	}
	return os.Truncate(path, size)
}

// Remove deletes path; a missing file is already removed.
func (f Files) Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing volume file: %w", err)
	}
	return nil
}

// Allocated returns the bytes path takes on disk (0 if missing).
func Allocated(path string) (int64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, nil
		}
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Blocks * 512, nil
}

// Space is the filesystem holding the volumes and the part of it kept
// free for everything else on the data partition (database, logs,
// artifacts): provisioning.iscsi.reserve.
type Space struct {
	Total, Free, Reserve int64
}

// StatSpace reads the filesystem of dir and sizes its reserve by r.
func StatSpace(dir string, r config.ISCSIService) (Space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Space{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	s := Space{Total: int64(st.Blocks) * st.Bsize, Free: int64(st.Bavail) * st.Bsize}
	s.Reserve = r.ReserveBytes(s.Total)
	return s, nil
}

// Usage is one volume's logical and allocated size.
type Usage struct{ Logical, Allocated int64 }

// CheckQuota refuses adding add logical bytes unless, with every volume
// written full, the filesystem keeps Reserve free: the blocks volumes
// have not written yet count as used.
func CheckQuota(s Space, vols []Usage, add int64) error {
	var promised int64
	for _, v := range vols {
		promised += max(v.Logical-v.Allocated, 0)
	}
	if promised+add+s.Reserve > s.Free {
		return fmt.Errorf("%w: %s more would not fit: the data partition has %s free, %s of it promised to volumes' unwritten blocks and %s kept for the appliance by provisioning.iscsi.reserve (delete volumes, lower the reserve or give the appliance a bigger disk)",
			ErrQuota, Bytes(add), Bytes(s.Free), Bytes(promised), Bytes(s.Reserve))
	}
	return nil
}

// Bytes formats n in binary units for messages ("16 GiB", "1.5 MiB").
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64)
	return strings.TrimSuffix(v, ".0") + " " + string("KMGTPE"[exp]) + "iB"
}
