// Package verity builds dm-verity hash trees (format version 1, SHA-256, 4 KiB
// data and hash blocks, no superblock) for the root squashfs of each slot, so
// the kernel checks every block it reads against a root hash carried on the
// boot entry's command line. The tree is what `veritysetup format
// --no-superblock` writes, byte for byte (checked in the tests), laid out top
// level first as dm-verity expects.
package verity

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// BlockSize is the data and hash block size.
const BlockSize = 4096

const digestsPerBlock = BlockSize / sha256.Size // 128

// Tree is a built hash tree and the parameters a dm-verity table needs.
type Tree struct {
	DataBlocks int64  // data blocks covered
	Salt       []byte // prepended to every hashed block
	RootHash   []byte
	Hash       []byte // the tree, top level first, whole hash blocks
}

// RootHex returns the root hash in hex, as the kernel command line carries it.
func (t *Tree) RootHex() string { return hex.EncodeToString(t.RootHash) }

// SaltHex returns the salt in hex ("-" when empty, as dm-verity's table wants).
func (t *Tree) SaltHex() string { return saltHex(t.Salt) }

func saltHex(salt []byte) string {
	if len(salt) == 0 {
		return "-"
	}
	return hex.EncodeToString(salt)
}

// ErrSize marks data that is not a whole number of blocks.
var ErrSize = errors.New("data size is not a multiple of the verity block size")

// Build hashes size bytes of data (a multiple of BlockSize) with salt.
func Build(data io.ReaderAt, size int64, salt []byte) (*Tree, error) {
	if size <= 0 || size%BlockSize != 0 {
		return nil, fmt.Errorf("%d bytes: %w (pad the image to %d bytes)", size, ErrSize, BlockSize)
	}
	t := &Tree{DataBlocks: size / BlockSize, Salt: append([]byte(nil), salt...)}
	h := sha256.New()
	digest := func(block []byte) []byte {
		h.Reset()
		h.Write(t.Salt)
		h.Write(block)
		return h.Sum(nil)
	}
	// Level 0 hashes the data; each next level hashes the one below, until a
	// level fits in one block.
	buf := make([]byte, BlockSize)
	var level []byte
	for i := int64(0); i < t.DataBlocks; i++ {
		if _, err := data.ReadAt(buf, i*BlockSize); err != nil {
			return nil, fmt.Errorf("reading data block %d: %w", i, err)
		}
		level = append(level, digest(buf)...)
	}
	if t.DataBlocks == 1 { // no tree: the root hash is the block's (dm-verity's zero levels)
		t.RootHash = level
		return t, nil
	}
	levels := [][]byte{pad(level)}
	for len(levels[len(levels)-1]) > BlockSize {
		below := levels[len(levels)-1]
		var up []byte
		for off := 0; off < len(below); off += BlockSize {
			up = append(up, digest(below[off:off+BlockSize])...)
		}
		levels = append(levels, pad(up))
	}
	top := levels[len(levels)-1]
	t.RootHash = digest(top)
	for i := len(levels) - 1; i >= 0; i-- {
		t.Hash = append(t.Hash, levels[i]...)
	}
	return t, nil
}

// pad zero-fills a level to whole hash blocks.
func pad(b []byte) []byte {
	if r := len(b) % BlockSize; r != 0 {
		b = append(b, make([]byte, BlockSize-r)...)
	}
	return b
}

// Table returns the dm-verity target line for a device holding the data
// followed by the tree at hashStartBlock (in BlockSize units) on the same device.
func (t *Tree) Table(dev string, hashStartBlock int64) string {
	return fmt.Sprintf("0 %d verity %s", t.DataBlocks*BlockSize/512, tableParams(dev, t.DataBlocks, hashStartBlock, t.RootHex(), t.SaltHex()))
}

func tableParams(dev string, dataBlocks, hashStart int64, root, salt string) string {
	return fmt.Sprintf("1 %s %s %d %d %d %d sha256 %s %s", dev, dev, BlockSize, BlockSize, dataBlocks, hashStart, root, salt)
}

// Params returns what a boot needs to check the data against the tree.
func (t *Tree) Params() Params {
	return Params{DataBlocks: t.DataBlocks, RootHash: append([]byte(nil), t.RootHash...), Salt: append([]byte(nil), t.Salt...)}
}

// HashBlocks returns the size in blocks of the tree over dataBlocks blocks.
func HashBlocks(dataBlocks int64) int64 {
	if dataBlocks <= 1 {
		return 0
	}
	var total int64
	for n := dataBlocks; n > 1; {
		n = (n + digestsPerBlock - 1) / digestsPerBlock
		total += n
	}
	return total
}
