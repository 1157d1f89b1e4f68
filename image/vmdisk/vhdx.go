package vmdisk

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// VHDX layout ([MS-VHDX] 2.0). Everything is 1 MiB aligned: the header section
// (file identifier, two headers, two region tables), the log, the metadata region,
// the BAT, then payload blocks.
const (
	vhdxBlockSize      = 1 * mib // Microsoft's recommendation for Linux guests (ext4 and squashfs allocate in small runs)
	vhdxLogicalSector  = 512
	vhdxPhysicalSector = 4096
	vhdxLogOffset      = 1 * mib
	vhdxLogLength      = 1 * mib
	vhdxMetaOffset     = 2 * mib
	vhdxMetaLength     = 1 * mib
	vhdxBATOffset      = 3 * mib
	vhdxHeaderSize     = 4096
	vhdxRegionSize     = 64 * 1024
	vhdxMetaItemsStart = 64 * 1024 // metadata items follow the 64 KiB table

	batPayloadNotPresent   = 0
	batPayloadFullyPresent = 6
)

// Well-known VHDX GUIDs.
var (
	vhdxRegionBAT      = mustGUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
	vhdxRegionMetadata = mustGUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
	vhdxFileParams     = mustGUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	vhdxVirtualSize    = mustGUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	vhdxPage83         = mustGUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
	vhdxLogicalSize    = mustGUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	vhdxPhysicalSize   = mustGUID("CDA348C7-445D-4471-9CC9-E9885251C556")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WriteVHDX writes a dynamic VHDX (Hyper-V) of the raw image src (size bytes) to
// dst: 1 MiB payload blocks, present only where the image has non-zero bytes, no
// parent, an empty log. It returns the bytes written.
func WriteVHDX(dst io.WriterAt, src io.ReaderAt, size int64, o Options) (int64, error) {
	vsize, err := o.virtualSize(size)
	if err != nil {
		return 0, err
	}
	blocks := (vsize + vhdxBlockSize - 1) / vhdxBlockSize
	chunkRatio := int64((1 << 23) * vhdxLogicalSector / vhdxBlockSize)
	entries := blocks + (blocks-1)/chunkRatio // payload entries with a sector bitmap entry after each chunk
	batLength := (entries*8 + mib - 1) / mib * mib
	bat := make([]byte, batLength)
	next := int64(vhdxBATOffset) + batLength
	err = chunks(src, size, vsize, vhdxBlockSize, func(i int64, b []byte) error {
		if b == nil {
			return nil // NOT_PRESENT reads as zeros on a disk without a parent
		}
		if _, err := dst.WriteAt(b, next); err != nil {
			return fmt.Errorf("writing vhdx block: %w", err)
		}
		idx := i + i/chunkRatio
		binary.LittleEndian.PutUint64(bat[idx*8:], uint64(next/mib)<<20|batPayloadFullyPresent)
		next += vhdxBlockSize
		return nil
	})
	if err != nil {
		return 0, err
	}

	head := make([]byte, vhdxBATOffset) // header section, log, metadata
	copy(head, "vhdxfile")
	for i, c := range utf16.Encode([]rune("kiln")) {
		binary.LittleEndian.PutUint16(head[8+2*i:], c)
	}
	for i, off := range []int{64 * 1024, 128 * 1024} {
		copy(head[off:], vhdxHeader(o, uint64(i)))
	}
	rt := vhdxRegionTable(batLength)
	copy(head[192*1024:], rt)
	copy(head[256*1024:], rt)
	copy(head[vhdxMetaOffset:], vhdxMetadata(o, vsize))
	if _, err := dst.WriteAt(head, 0); err != nil {
		return 0, fmt.Errorf("writing vhdx headers: %w", err)
	}
	if _, err := dst.WriteAt(bat, vhdxBATOffset); err != nil {
		return 0, fmt.Errorf("writing vhdx BAT: %w", err)
	}
	return next, nil
}

// vhdxHeader is one of the two 4 KiB headers; the one with the higher sequence
// number is current.
func vhdxHeader(o Options, seq uint64) []byte {
	b := make([]byte, vhdxHeaderSize)
	le := binary.LittleEndian
	copy(b[0:], "head")
	le.PutUint64(b[8:], seq)
	copy(b[16:], uuidV4(o.derive("vhdx-file-write", 16)))
	copy(b[32:], uuidV4(o.derive("vhdx-data-write", 16)))
	// LogGuid (48..64) stays zero: the log is empty and nothing is replayed.
	le.PutUint16(b[64:], 0) // LogVersion
	le.PutUint16(b[66:], 1) // Version
	le.PutUint32(b[68:], vhdxLogLength)
	le.PutUint64(b[72:], vhdxLogOffset)
	le.PutUint32(b[4:], crc32.Checksum(b, castagnoli))
	return b
}

// vhdxRegionTable lists the BAT and metadata regions, both required.
func vhdxRegionTable(batLength int64) []byte {
	b := make([]byte, vhdxRegionSize)
	le := binary.LittleEndian
	copy(b[0:], "regi")
	le.PutUint32(b[8:], 2)
	put := func(at int, g []byte, off int64, length int64) {
		copy(b[at:], g)
		le.PutUint64(b[at+16:], uint64(off))
		le.PutUint32(b[at+24:], uint32(length))
		le.PutUint32(b[at+28:], 1) // Required
	}
	put(16, vhdxRegionBAT, vhdxBATOffset, batLength)
	put(48, vhdxRegionMetadata, vhdxMetaOffset, vhdxMetaLength)
	le.PutUint32(b[4:], crc32.Checksum(b, castagnoli))
	return b
}

// vhdxMetadata is the metadata region: the table and its five required items.
func vhdxMetadata(o Options, vsize int64) []byte {
	const (
		isVirtualDisk = 1 << 1
		isRequired    = 1 << 2
	)
	le := binary.LittleEndian
	u32 := func(v uint32) []byte { return le.AppendUint32(nil, v) }
	items := []struct {
		id    []byte
		flags uint32
		data  []byte
	}{
		{vhdxFileParams, isRequired, append(u32(vhdxBlockSize), u32(0)...)}, // dynamic, no parent
		{vhdxVirtualSize, isVirtualDisk | isRequired, le.AppendUint64(nil, uint64(vsize))},
		{vhdxPage83, isVirtualDisk | isRequired, uuidV4(o.derive("vhdx-disk-id", 16))},
		{vhdxLogicalSize, isVirtualDisk | isRequired, u32(vhdxLogicalSector)},
		{vhdxPhysicalSize, isVirtualDisk | isRequired, u32(vhdxPhysicalSector)},
	}
	b := make([]byte, vhdxMetaLength)
	copy(b[0:], "metadata")
	le.PutUint16(b[10:], uint16(len(items)))
	off := vhdxMetaItemsStart
	for i, it := range items {
		e := 32 + i*32
		copy(b[e:], it.id)
		le.PutUint32(b[e+16:], uint32(off))
		le.PutUint32(b[e+20:], uint32(len(it.data)))
		le.PutUint32(b[e+24:], it.flags)
		copy(b[off:], it.data)
		off += 8 * ((len(it.data) + 7) / 8)
	}
	return b
}

// mustGUID encodes a GUID string in the on-disk (Microsoft, mixed-endian) order.
func mustGUID(s string) []byte {
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 {
		panic("vmdisk: bad GUID " + s)
	}
	var raw [16]byte
	for i := range raw {
		if _, err := fmt.Sscanf(h[2*i:2*i+2], "%02x", &raw[i]); err != nil {
			panic("vmdisk: bad GUID " + s)
		}
	}
	return msOrder(raw[:])
}

// msOrder turns RFC 4122 byte order into the Microsoft GUID layout (first three
// fields little-endian).
func msOrder(u []byte) []byte {
	g := append([]byte(nil), u...)
	g[0], g[1], g[2], g[3] = u[3], u[2], u[1], u[0]
	g[4], g[5] = u[5], u[4]
	g[6], g[7] = u[7], u[6]
	return g
}

// uuidV4 shapes 16 derived bytes as a version-4 (random-looking) GUID in
// Microsoft order.
func uuidV4(b []byte) []byte {
	u := append([]byte(nil), b...)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return msOrder(u)
}
