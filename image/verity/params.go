package verity

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// CmdlineParam is the kernel command-line parameter carrying Params on a
// slot's boot entry: kiln.verity=<root hash>:<data blocks>:<salt>.
const CmdlineParam = "kiln.verity"

// DeviceName is the device-mapper name stage 1 gives the verified root.
const DeviceName = "kiln-root"

// Params are the facts a boot needs to open a root partition laid out as the
// image build and OTA install write it: DataBlocks blocks of squashfs
// (zero-padded to BlockSize), then the hash tree, starting at block DataBlocks.
type Params struct {
	DataBlocks int64
	RootHash   []byte // SHA-256 root of the tree
	Salt       []byte // empty: no salt
}

// ErrParams marks a malformed kiln.verity value.
var ErrParams = errors.New("malformed " + CmdlineParam + " value")

// String renders the kiln.verity value: "<root hex>:<data blocks>:<salt hex or ->".
func (p Params) String() string {
	return fmt.Sprintf("%s:%d:%s", hex.EncodeToString(p.RootHash), p.DataBlocks, saltHex(p.Salt))
}

// ParseParams parses a kiln.verity value.
func ParseParams(s string) (Params, error) {
	f := strings.Split(s, ":")
	if len(f) != 3 {
		return Params{}, fmt.Errorf("%s=%q: %w: want <root hash>:<data blocks>:<salt>", CmdlineParam, s, ErrParams)
	}
	var p Params
	var err error
	if p.RootHash, err = hex.DecodeString(f[0]); err != nil || len(p.RootHash) != sha256.Size {
		return Params{}, fmt.Errorf("%s=%q: %w: the root hash must be %d hex digits", CmdlineParam, s, ErrParams, 2*sha256.Size)
	}
	if p.DataBlocks, err = strconv.ParseInt(f[1], 10, 64); err != nil || p.DataBlocks < 1 || f[1] != strconv.FormatInt(p.DataBlocks, 10) {
		return Params{}, fmt.Errorf("%s=%q: %w: data blocks %q is not a positive number", CmdlineParam, s, ErrParams, f[1])
	}
	if f[2] != "-" {
		if p.Salt, err = hex.DecodeString(f[2]); err != nil || len(p.Salt) == 0 || len(p.Salt) > 256 {
			return Params{}, fmt.Errorf("%s=%q: %w: the salt must be hex (up to 256 bytes) or -", CmdlineParam, s, ErrParams)
		}
	}
	return p, nil
}

// Equal reports whether p and q describe the same tree.
func (p Params) Equal(q Params) bool {
	return p.DataBlocks == q.DataBlocks && bytes.Equal(p.RootHash, q.RootHash) && bytes.Equal(p.Salt, q.Salt)
}

// Size returns the bytes the data and its tree occupy on the partition.
func (p Params) Size() int64 { return (p.DataBlocks + HashBlocks(p.DataBlocks)) * BlockSize }

// TableParams returns the verity target's parameters for dev ("major:minor"
// or a path) holding data and tree; no optional arguments, so a corrupted
// block fails the read with EIO (see docs/image.md, "Verified root").
func (p Params) TableParams(dev string) string {
	return tableParams(dev, p.DataBlocks, p.DataBlocks, hex.EncodeToString(p.RootHash), saltHex(p.Salt))
}

// Sectors returns the mapped device's length in 512-byte sectors.
func (p Params) Sectors() uint64 { return uint64(p.DataBlocks) * BlockSize / 512 }

// Append lays a verified partition image out in file p: it zero-pads the data
// (the whole file) to BlockSize and appends its hash tree. The salt is derived
// from the data, so the same data always gives the same bytes and root hash
// (reproducible builds) while different releases never share a salt.
func Append(p string) (Params, error) {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return Params{}, fmt.Errorf("adding a verity tree: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Params{}, fmt.Errorf("adding a verity tree to %s: %w", p, err)
	}
	size := (st.Size() + BlockSize - 1) / BlockSize * BlockSize
	if size == 0 {
		return Params{}, fmt.Errorf("adding a verity tree to %s: the file is empty", p)
	}
	if err := f.Truncate(size); err != nil {
		return Params{}, fmt.Errorf("padding %s: %w", p, err)
	}
	h := sha256.New()
	h.Write([]byte("kiln/verity-salt\x00"))
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return Params{}, fmt.Errorf("hashing %s: %w", p, err)
	}
	t, err := Build(f, size, h.Sum(nil))
	if err != nil {
		return Params{}, fmt.Errorf("building the verity tree of %s: %w", p, err)
	}
	if _, err := f.WriteAt(t.Hash, size); err != nil {
		return Params{}, fmt.Errorf("writing the verity tree of %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return Params{}, fmt.Errorf("writing the verity tree of %s: %w", p, err)
	}
	return t.Params(), nil
}

// ErrMismatch marks data or a tree that does not match the root hash.
var ErrMismatch = errors.New("does not match its verity root hash")

// CheckRoot checks that the tree stored after the data in r hashes to
// p.RootHash: one block read, so the data itself is not checked (the kernel
// checks each block as it is read; Check checks them all).
func CheckRoot(r io.ReaderAt, p Params) error {
	buf := make([]byte, BlockSize)
	off := p.DataBlocks * BlockSize // the top level of the tree, or the only data block
	if p.DataBlocks == 1 {
		off = 0
	}
	if _, err := r.ReadAt(buf, off); err != nil {
		return fmt.Errorf("reading the top of the verity tree: %w", err)
	}
	h := sha256.New()
	h.Write(p.Salt)
	h.Write(buf)
	if !bytes.Equal(h.Sum(nil), p.RootHash) {
		return fmt.Errorf("the verity tree's top block %w", ErrMismatch)
	}
	return nil
}

// Check rebuilds the tree over the data in r and compares it with the tree
// stored after the data and with p.RootHash.
func Check(r io.ReaderAt, p Params) error {
	t, err := Build(r, p.DataBlocks*BlockSize, p.Salt)
	if err != nil {
		return err
	}
	if !bytes.Equal(t.RootHash, p.RootHash) {
		return fmt.Errorf("the data %w (root hash %x, want %x)", ErrMismatch, t.RootHash, p.RootHash)
	}
	if len(t.Hash) == 0 {
		return nil
	}
	stored := make([]byte, len(t.Hash))
	if _, err := r.ReadAt(stored, p.DataBlocks*BlockSize); err != nil {
		return fmt.Errorf("reading the stored verity tree: %w", err)
	}
	if !bytes.Equal(stored, t.Hash) {
		return fmt.Errorf("the stored verity tree %w (it differs from the tree of the data)", ErrMismatch)
	}
	return nil
}
