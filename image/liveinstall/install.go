package liveinstall

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"kiln.dev/kiln/image/flash"
)

// zeroer zeroes a byte range without sending the zeros (BLKZEROOUT, or
// fallocate on a file): most of the image is zeros.
type zeroer interface {
	ZeroRange(off, n int64) error
}

// cacheDropper is a device whose cached pages can be dropped, so the read-back
// reads the medium rather than memory.
type cacheDropper interface {
	DropCache() error
}

// Options tune Install.
type Options struct {
	DevSize int64 // the device's size: when larger than the image, its last MiB is zeroed (a stale backup GPT)
	Now     func() time.Time
	Report  func(flash.Progress) // called after every chunk and once at the end of each phase
}

// Install writes the image m describes onto dev, taking each extent's bytes
// from src[extent.Source] and zeroing the rest, fsyncs, drops the device's
// cached pages and reads the whole image back, failing with flash.ErrVerify
// unless every extent hashes to its SHA-256 in m and every other byte is
// zero: the disk then holds exactly the build's raw image (m.SHA256).
func Install(ctx context.Context, dev flash.Device, m Map, src map[string]io.ReaderAt, o Options) (flash.Result, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	report := func(p flash.Progress) {
		if o.Report != nil {
			o.Report(p)
		}
	}
	for name := range m.Need() {
		if src[name] == nil {
			return flash.Result{}, fmt.Errorf("installing: the map reads from %q, which the medium does not have", name)
		}
	}
	var res flash.Result
	start := o.Now()
	buf := make([]byte, 4<<20)
	var pos, sinceSync int64
	progress := func() {
		report(flash.Progress{Phase: "writing", Done: pos, Total: m.Size, Elapsed: o.Now().Sub(start)})
	}
	for _, e := range append(m.Extents, Extent{Offset: m.Size}) {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("installing stopped at byte %d of %d: %w", pos, m.Size, err)
		}
		if e.Offset > pos {
			if err := zero(dev, pos, e.Offset-pos, buf); err != nil {
				return res, err
			}
			pos = e.Offset
			progress()
		}
		for done := int64(0); done < e.Length; {
			if err := ctx.Err(); err != nil {
				return res, fmt.Errorf("installing stopped at byte %d of %d: %w", pos, m.Size, err)
			}
			n := min(int64(len(buf)), e.Length-done)
			if _, err := src[e.Source].ReadAt(buf[:n], e.At+done); err != nil {
				return res, fmt.Errorf("reading the live medium's %s at byte %d: %w (the medium is damaged: write the ISO again)", e.Source, e.At+done, err)
			}
			if _, err := dev.WriteAt(buf[:n], pos); err != nil {
				return res, fmt.Errorf("writing the disk at byte %d: %w", pos, err)
			}
			done += n
			pos += n
			if sinceSync += n; sinceSync >= 64<<20 {
				if err := dev.Sync(); err != nil {
					return res, fmt.Errorf("flushing the disk at byte %d: %w", pos, err)
				}
				sinceSync = 0
			}
			progress()
		}
	}
	if o.DevSize > m.Size {
		tail := min(int64(1<<20), o.DevSize-m.Size)
		if err := zero(dev, o.DevSize-tail, tail, buf); err != nil {
			return res, fmt.Errorf("clearing the end of the disk (a stale backup partition table): %w", err)
		}
	}
	if err := dev.Sync(); err != nil {
		return res, fmt.Errorf("flushing the disk: %w", err)
	}
	res.Write = o.Now().Sub(start)
	res.Bytes = m.Size
	res.SHA256 = m.SHA256

	if d, ok := dev.(cacheDropper); ok {
		if err := d.DropCache(); err != nil {
			return res, fmt.Errorf("dropping cached pages before the read-back: %w", err)
		}
	}
	start = o.Now()
	var off int64
	verified := func() {
		report(flash.Progress{Phase: "verifying", Done: off, Total: m.Size, Elapsed: o.Now().Sub(start)})
	}
	zeros := make([]byte, len(buf))
	for _, e := range append(m.Extents, Extent{Offset: m.Size}) {
		// The gap before the extent must read back as zeros.
		for off < e.Offset {
			if err := ctx.Err(); err != nil {
				return res, fmt.Errorf("verifying stopped at byte %d of %d: %w", off, m.Size, err)
			}
			n := min(int64(len(buf)), e.Offset-off)
			if _, err := dev.ReadAt(buf[:n], off); err != nil {
				return res, fmt.Errorf("reading the disk back at byte %d: %w", off, err)
			}
			if !bytes.Equal(buf[:n], zeros[:n]) {
				return res, fmt.Errorf("the disk reads back non-zero bytes near byte %d, where the image has zeros: %w: the disk may be failing or fake-capacity; try another", off, flash.ErrVerify)
			}
			off += n
			verified()
		}
		h := sha256.New()
		for done := int64(0); done < e.Length; {
			if err := ctx.Err(); err != nil {
				return res, fmt.Errorf("verifying stopped at byte %d of %d: %w", off, m.Size, err)
			}
			n := min(int64(len(buf)), e.Length-done)
			if _, err := dev.ReadAt(buf[:n], off); err != nil {
				return res, fmt.Errorf("reading the disk back at byte %d: %w", off, err)
			}
			h.Write(buf[:n])
			done += n
			off += n
			verified()
		}
		if e.Length > 0 {
			if got := hex.EncodeToString(h.Sum(nil)); got != e.SHA256 {
				return res, fmt.Errorf("the disk's bytes %d-%d (from the medium's %s) read back sha256 %s, the image's are %s: %w: the live medium or the disk is damaged; write the ISO again or try another disk", e.Offset, e.Offset+e.Length, e.Source, got, e.SHA256, flash.ErrVerify)
			}
		}
	}
	res.Verify = o.Now().Sub(start)
	return res, nil
}

// zero zeroes n bytes at off: by the device's zeroing call when it has one
// that works, else by writing buf's worth of zeros at a time.
func zero(dev flash.Device, off, n int64, buf []byte) error {
	if z, ok := dev.(zeroer); ok && z.ZeroRange(off, n) == nil {
		return nil
	}
	clear(buf)
	for done := int64(0); done < n; {
		k := min(int64(len(buf)), n-done)
		if _, err := dev.WriteAt(buf[:k], off+done); err != nil {
			return fmt.Errorf("zeroing the disk at byte %d: %w", off+done, err)
		}
		done += k
	}
	return nil
}
