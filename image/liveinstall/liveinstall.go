// Package liveinstall carries the appliance's raw disk image inside the live
// ISO without storing the root twice, and writes it from the live system to a
// disk: the recovery menu's "install to disk". The ISO holds a map
// (LIVE/DISK.MAP, JSON) of the image's non-zero byte runs, each taken either
// from LIVE/ROOT.SFS (both root slots) or from LIVE/DISK.DAT (everything
// else: partition tables, ESP, GRUB); every other byte of the image is zero.
// The map also holds the image's size and SHA-256 (as the build printed it
// for out/kiln.img) and each extent's SHA-256: the read-back hashes only the
// extents and checks that every other byte is zero, which proves the same
// equality while hashing ~100 MiB instead of the whole image.
package liveinstall

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Paths in the live ISO (ISO 9660 names).
const (
	MapPath  = "LIVE/DISK.MAP"
	DataPath = "LIVE/DISK.DAT"
)

// Sources an extent's bytes come from.
const (
	SourceData = "data" // LIVE/DISK.DAT
	SourceRoot = "root" // LIVE/ROOT.SFS
)

// chunk is the scan granularity: runs of zeros shorter than this stay in
// DISK.DAT, which keeps the map short.
const chunk = 64 << 10

// Extent is one run of the image's bytes that is not all zeros.
type Extent struct {
	Offset int64  `json:"offset"` // byte in the image (on the disk)
	Length int64  `json:"length"`
	Source string `json:"source"` // SourceData or SourceRoot
	At     int64  `json:"at"`     // byte in the source
	SHA256 string `json:"sha256"` // of the extent's bytes
}

// Map describes the raw image: its size and hash and its non-zero runs,
// sorted by offset and not overlapping.
type Map struct {
	Size    int64    `json:"size"`
	SHA256  string   `json:"sha256"`
	Extents []Extent `json:"extents"`
}

// ErrMap marks a map that does not describe an image.
var ErrMap = errors.New("malformed install map")

// Parse reads a map and checks that it describes an image: a positive size, a
// SHA-256, extents inside the image, sorted, not overlapping, from a known
// source.
func Parse(b []byte) (Map, error) {
	var m Map
	if err := json.Unmarshal(b, &m); err != nil {
		return Map{}, fmt.Errorf("%w: %v (the ISO is damaged: write it again)", ErrMap, err)
	}
	if m.Size <= 0 || m.Size%512 != 0 {
		return Map{}, fmt.Errorf("%w: size %d is not a positive multiple of 512", ErrMap, m.Size)
	}
	if !isSHA256(m.SHA256) {
		return Map{}, fmt.Errorf("%w: sha256 %q is not 64 hex digits", ErrMap, m.SHA256)
	}
	end := int64(0)
	for i, e := range m.Extents {
		switch {
		case e.Source != SourceData && e.Source != SourceRoot:
			return Map{}, fmt.Errorf("%w: extent %d has source %q, want %q or %q", ErrMap, i, e.Source, SourceData, SourceRoot)
		case !isSHA256(e.SHA256):
			return Map{}, fmt.Errorf("%w: extent %d has sha256 %q, not 64 hex digits", ErrMap, i, e.SHA256)
		case e.Length <= 0 || e.At < 0:
			return Map{}, fmt.Errorf("%w: extent %d has length %d at %d", ErrMap, i, e.Length, e.At)
		case e.Offset < end:
			return Map{}, fmt.Errorf("%w: extent %d at byte %d overlaps or precedes the one before (ends at %d)", ErrMap, i, e.Offset, end)
		case e.Offset+e.Length > m.Size:
			return Map{}, fmt.Errorf("%w: extent %d ends at byte %d, past the image's %d", ErrMap, i, e.Offset+e.Length, m.Size)
		}
		end = e.Offset + e.Length
	}
	return m, nil
}

// Marshal renders the map (one extent per line, for people reading the ISO).
func (m Map) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\"size\": %d, \"sha256\": %q, \"extents\": [", m.Size, m.SHA256)
	for i, e := range m.Extents {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "\n  {\"offset\": %d, \"length\": %d, \"source\": %q, \"at\": %d, \"sha256\": %q}", e.Offset, e.Length, e.Source, e.At, e.SHA256)
	}
	b.WriteString("\n]}\n")
	return b.Bytes()
}

// Need returns how many bytes of each source the map reads.
func (m Map) Need() map[string]int64 {
	need := map[string]int64{}
	for _, e := range m.Extents {
		need[e.Source] = max(need[e.Source], e.At+e.Length)
	}
	return need
}

// Build scans the raw image img (size bytes) and returns its map, writing the
// bytes that are not zero and not a root slot's copy of root to data. roots
// are the byte offsets where the image holds root (its root slots); Build
// fails when a slot does not hold root byte for byte.
func Build(img io.ReaderAt, size int64, root io.ReaderAt, rootSize int64, roots []int64, data io.Writer) (Map, error) {
	if size <= 0 || size%512 != 0 {
		return Map{}, fmt.Errorf("install map: image size %d is not a positive multiple of 512", size)
	}
	roots = slices.Sorted(slices.Values(roots))
	for i, r := range roots {
		if r < 0 || r+rootSize > size || i > 0 && r < roots[i-1]+rootSize {
			return Map{}, fmt.Errorf("install map: root slot at byte %d (%d bytes) is outside the %d-byte image or overlaps another", r, rootSize, size)
		}
	}
	m := Map{Size: size}
	h := sha256.New()
	eh := sha256.New() // of the last extent
	closeExtent := func() {
		if l := len(m.Extents) - 1; l >= 0 && m.Extents[l].SHA256 == "" {
			m.Extents[l].SHA256 = hex.EncodeToString(eh.Sum(nil))
		}
		eh.Reset()
	}
	buf := make([]byte, chunk)
	want := make([]byte, chunk)
	var at int64 // bytes written to data
	for off := int64(0); off < size; {
		n := min(chunk-off%chunk, size-off) // chunks stay aligned after a root slot
		// A root slot starts here: its bytes come from root.
		if i := slices.Index(roots, off); i >= 0 {
			closeExtent()
			for done := int64(0); done < rootSize; {
				k := min(int64(chunk), rootSize-done)
				if _, err := img.ReadAt(buf[:k], off+done); err != nil {
					return Map{}, fmt.Errorf("install map: reading the image at byte %d: %w", off+done, err)
				}
				if _, err := root.ReadAt(want[:k], done); err != nil {
					return Map{}, fmt.Errorf("install map: reading the root at byte %d: %w", done, err)
				}
				if !bytes.Equal(buf[:k], want[:k]) {
					return Map{}, fmt.Errorf("install map: the root slot at byte %d differs from the root squashfs at byte %d", off, done)
				}
				h.Write(buf[:k])
				eh.Write(buf[:k])
				done += k
			}
			m.Extents = append(m.Extents, Extent{Offset: off, Length: rootSize, Source: SourceRoot})
			closeExtent()
			off += rootSize
			continue
		}
		// Stop the chunk at the next root slot.
		for _, r := range roots {
			if r > off && r < off+n {
				n = r - off
			}
		}
		if _, err := img.ReadAt(buf[:n], off); err != nil {
			return Map{}, fmt.Errorf("install map: reading the image at byte %d: %w", off, err)
		}
		h.Write(buf[:n])
		if !allZero(buf[:n]) {
			if _, err := data.Write(buf[:n]); err != nil {
				return Map{}, fmt.Errorf("install map: writing the data: %w", err)
			}
			if l := len(m.Extents) - 1; l >= 0 && m.Extents[l].Source == SourceData && m.Extents[l].Offset+m.Extents[l].Length == off {
				m.Extents[l].Length += n
			} else {
				closeExtent()
				m.Extents = append(m.Extents, Extent{Offset: off, Length: n, Source: SourceData, At: at})
			}
			eh.Write(buf[:n])
			at += n
		} else {
			closeExtent()
		}
		off += n
	}
	closeExtent()
	m.SHA256 = hex.EncodeToString(h.Sum(nil))
	return m, nil
}

func isSHA256(s string) bool {
	h, err := hex.DecodeString(s)
	return err == nil && len(h) == sha256.Size
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
