package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
)

// Device is what Write writes to: a block device or, in tests, a file.
type Device interface {
	io.WriterAt
	io.ReaderAt
	Sync() error
}

// cacheDropper is a device whose cached pages can be dropped, so the read-back
// reads the medium rather than memory (block devices and files on Linux).
type cacheDropper interface {
	DropCache() error
}

// ErrVerify marks a read-back that does not match what was written.
var ErrVerify = errors.New("read-back does not match the image")

// Progress is a snapshot of a write or its verification.
type Progress struct {
	Phase   string // "writing" or "verifying"
	Done    int64
	Total   int64
	Elapsed time.Duration
}

// Rate returns bytes per second so far.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Done) / p.Elapsed.Seconds()
}

// Options tune Write.
type Options struct {
	Chunk     int   // bytes per write (4 MiB when 0)
	SyncEvery int64 // fsync after this many bytes so progress tracks the medium, not the page cache (64 MiB when 0)
	DevSize   int64 // the device's size: when larger than the image, its last MiB is zeroed (a stale backup GPT of an earlier layout)
	Now       func() time.Time
	Report    func(Progress) // called after every chunk and once at the end of each phase
}

// Result is what a successful Write did.
type Result struct {
	Bytes  int64
	SHA256 string
	Write  time.Duration // writing including fsyncs
	Verify time.Duration // reading back
}

// Write copies size bytes of src to dev from offset 0, fsyncing as it goes and at
// the end, then drops the device's cached pages and reads the bytes back, failing
// with ErrVerify unless their SHA-256 matches the source's.
func Write(ctx context.Context, dev Device, src io.Reader, size int64, o Options) (Result, error) {
	if o.Chunk <= 0 {
		o.Chunk = 4 << 20
	}
	if o.SyncEvery <= 0 {
		o.SyncEvery = 64 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	report := func(p Progress) {
		if o.Report != nil {
			o.Report(p)
		}
	}
	var res Result
	buf := make([]byte, o.Chunk)
	h := sha256.New()
	start := o.Now()
	var sinceSync int64
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("writing stopped at byte %d of %d: %w", off, size, err)
		}
		n := int(min(int64(len(buf)), size-off))
		if _, err := io.ReadFull(src, buf[:n]); err != nil {
			return res, fmt.Errorf("reading the image at byte %d: %w", off, err)
		}
		h.Write(buf[:n])
		if _, err := dev.WriteAt(buf[:n], off); err != nil {
			return res, fmt.Errorf("writing the device at byte %d: %w", off, err)
		}
		off += int64(n)
		if sinceSync += int64(n); sinceSync >= o.SyncEvery {
			if err := dev.Sync(); err != nil {
				return res, fmt.Errorf("flushing the device at byte %d: %w", off, err)
			}
			sinceSync = 0
		}
		report(Progress{Phase: "writing", Done: off, Total: size, Elapsed: o.Now().Sub(start)})
	}
	if o.DevSize > size {
		tail := min(int64(1<<20), o.DevSize-size)
		if _, err := dev.WriteAt(make([]byte, tail), o.DevSize-tail); err != nil {
			return res, fmt.Errorf("clearing the end of the device (a stale backup partition table): %w", err)
		}
	}
	if err := dev.Sync(); err != nil {
		return res, fmt.Errorf("flushing the device: %w", err)
	}
	res.Write = o.Now().Sub(start)
	res.Bytes = size
	want := h.Sum(nil)
	res.SHA256 = hex.EncodeToString(want)

	if d, ok := dev.(cacheDropper); ok {
		if err := d.DropCache(); err != nil {
			return res, fmt.Errorf("dropping cached pages before the read-back: %w", err)
		}
	}
	start = o.Now()
	h.Reset()
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("verifying stopped at byte %d of %d: %w", off, size, err)
		}
		n := int(min(int64(len(buf)), size-off))
		if _, err := dev.ReadAt(buf[:n], off); err != nil {
			return res, fmt.Errorf("reading the device back at byte %d: %w", off, err)
		}
		h.Write(buf[:n])
		off += int64(n)
		report(Progress{Phase: "verifying", Done: off, Total: size, Elapsed: o.Now().Sub(start)})
	}
	res.Verify = o.Now().Sub(start)
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return res, fmt.Errorf("device reads back sha256 %x, the image is %x: %w: the disk may be failing or fake-capacity; try another", got, want, ErrVerify)
	}
	return res, nil
}
