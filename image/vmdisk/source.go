package vmdisk

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

const (
	sector = 512
	mib    = 1 << 20
)

// ErrSize marks a virtual size the formats cannot represent.
var ErrSize = errors.New("bad virtual disk size")

// Options are shared by every format.
type Options struct {
	// ID seeds every identifier stamped into the file (VMDK CID and UUID, VHDX
	// GUIDs). The image build passes the raw image's SHA-256, so identical images
	// give identical files and different images different identifiers.
	ID string
	// VirtualSize is the disk size the VM sees, in bytes: 0 means the raw image's
	// size. A larger size gives the appliance room (its data partition grows to fill
	// the disk on first boot). It must be a multiple of 1 MiB and at least the raw size.
	VirtualSize int64
}

// virtualSize returns the size a VM sees for a raw image of rawSize bytes.
func (o Options) virtualSize(rawSize int64) (int64, error) {
	v := o.VirtualSize
	if v == 0 {
		v = rawSize
	}
	switch {
	case rawSize <= 0:
		return 0, fmt.Errorf("raw image is %d bytes: %w", rawSize, ErrSize)
	case v < rawSize:
		return 0, fmt.Errorf("virtual size %d is smaller than the %d-byte raw image: give at least the image size: %w", v, rawSize, ErrSize)
	case v%mib != 0:
		return 0, fmt.Errorf("virtual size %d is not a multiple of 1 MiB: round it up: %w", v, ErrSize)
	}
	return v, nil
}

// derive returns n bytes derived from the options' ID and a purpose.
func (o Options) derive(purpose string, n int) []byte {
	sum := sha256.Sum256([]byte("kiln/vmdisk/" + o.ID + "/" + purpose))
	return sum[:n]
}

// chunks reads src (size bytes, then zeros up to virtual) in chunks of n bytes and
// calls fn with each chunk's index and contents, nil for an all-zero chunk.
func chunks(src io.ReaderAt, size, virtual int64, n int, fn func(i int64, b []byte) error) error {
	buf, zero := make([]byte, n), make([]byte, n)
	holes := holeFinder(src)
	dataAt := int64(0) // no data before this offset (from SEEK_DATA)
	for off := int64(0); off < virtual; off += int64(n) {
		clear(buf)
		if off < size && off+int64(n) > dataAt && holes != nil {
			dataAt = holes(off, size)
		}
		if off < size && off+int64(n) > dataAt {
			want := min(int64(n), size-off)
			if _, err := src.ReadAt(buf[:want], off); err != nil && !(errors.Is(err, io.EOF)) {
				return fmt.Errorf("reading raw image at %d: %w", off, err)
			}
		}
		b := buf
		if bytes.Equal(buf, zero) {
			b = nil
		}
		if err := fn(off/int64(n), b); err != nil {
			return err
		}
	}
	return nil
}

// holeFinder returns, for a sparse file, a function giving the first offset at or
// after off that holds data (size when none), so all-zero holes are not read. It
// returns nil for sources that are not files.
func holeFinder(src io.ReaderAt) func(off, size int64) int64 {
	f, ok := src.(interface{ Fd() uintptr })
	if !ok {
		return nil
	}
	return func(off, size int64) int64 {
		d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				return size // only a hole up to the end
			}
			return off // no SEEK_DATA: read everything
		}
		return d
	}
}
