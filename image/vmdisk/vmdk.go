package vmdisk

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// VMDK sparse extent constants (VMware Virtual Disk Format 1.1).
const (
	vmdkMagic        = 0x564d444b // "KDMV" little-endian
	grainSectors     = 128        // 64 KiB grains
	grainBytes       = grainSectors * sector
	gtesPerGT        = 512
	gtSectors        = gtesPerGT * 4 / sector // 4
	descSectors      = 20                     // room for the embedded descriptor (qemu uses the same)
	flagNewlineTest  = 1 << 0
	flagRedundantGT  = 1 << 1
	flagCompressed   = 1 << 16
	flagMarkers      = 1 << 17
	compressDeflate  = 1
	gdAtEnd          = ^uint64(0)
	markerEOS        = 0
	markerGT         = 1
	markerGD         = 2
	markerFooter     = 3
	vmdkAdapterType  = "lsilogic" // VMware's default SCSI HBA; stage 1 loads mptspi for it
	vmdkHeads        = 255        // SCSI geometry VMware uses
	vmdkSectorsTrack = 63
)

// vmdkHeader is SparseExtentHeader, packed little-endian into one sector.
type vmdkHeader struct {
	version      uint32
	flags        uint32
	capacity     uint64 // sectors
	descOffset   uint64
	descSize     uint64
	rgdOffset    uint64
	gdOffset     uint64
	overhead     uint64
	compressAlgo uint16
}

func (h vmdkHeader) bytes() []byte {
	b := make([]byte, sector)
	le := binary.LittleEndian
	le.PutUint32(b[0:], vmdkMagic)
	le.PutUint32(b[4:], h.version)
	le.PutUint32(b[8:], h.flags)
	le.PutUint64(b[12:], h.capacity)
	le.PutUint64(b[20:], grainSectors)
	le.PutUint64(b[28:], h.descOffset)
	le.PutUint64(b[36:], h.descSize)
	le.PutUint32(b[44:], gtesPerGT)
	le.PutUint64(b[48:], h.rgdOffset)
	le.PutUint64(b[56:], h.gdOffset)
	le.PutUint64(b[64:], h.overhead)
	b[72] = 0 // uncleanShutdown
	b[73], b[74], b[75], b[76] = '\n', ' ', '\r', '\n'
	le.PutUint16(b[77:], h.compressAlgo)
	return b
}

// vmdkDescriptor is the embedded text descriptor of a single-extent sparse disk.
func vmdkDescriptor(o Options, createType, fileName string, capacity uint64) []byte {
	cid := binary.LittleEndian.Uint32(o.derive("vmdk-cid", 4))
	if cid == 0xffffffff { // reserved: "no parent"
		cid = 0xfffffffe
	}
	cyl := capacity / (vmdkHeads * vmdkSectorsTrack)
	cyl = min(cyl, 65535)
	var b strings.Builder
	fmt.Fprintf(&b, "# Disk DescriptorFile\nversion=1\nCID=%08x\nparentCID=ffffffff\ncreateType=%q\n\n", cid, createType)
	fmt.Fprintf(&b, "# Extent description\nRW %d SPARSE %q\n\n", capacity, fileName)
	fmt.Fprintf(&b, "# The Disk Data Base\n#DDB\n\n")
	fmt.Fprintf(&b, "ddb.adapterType = %q\n", vmdkAdapterType)
	fmt.Fprintf(&b, "ddb.geometry.cylinders = \"%d\"\nddb.geometry.heads = \"%d\"\nddb.geometry.sectors = \"%d\"\n", cyl, vmdkHeads, vmdkSectorsTrack)
	fmt.Fprintf(&b, "ddb.uuid = %q\n", vmdkUUID(o.derive("vmdk-uuid", 16)))
	fmt.Fprintf(&b, "ddb.virtualHWVersion = \"4\"\n")
	return []byte(b.String())
}

// vmdkUUID formats 16 bytes the way VMware writes ddb.uuid.
func vmdkUUID(u []byte) string {
	var parts []string
	for i, c := range u {
		s := fmt.Sprintf("%02x", c)
		if i == 8 {
			s = "-" + s
		}
		parts = append(parts, s)
	}
	return strings.ReplaceAll(strings.Join(parts, " "), " -", "-")
}

// WriteVMDK writes a monolithicSparse VMDK of the raw image src (size bytes) to
// dst: one file with the descriptor embedded, grain directory and tables in front,
// uncompressed 64 KiB grains for every non-zero grain. fileName is the name the
// file will have (the descriptor names its own extent). VMware Workstation, Fusion,
// Player and VirtualBox attach it directly. It returns the bytes written.
func WriteVMDK(dst io.WriterAt, src io.ReaderAt, size int64, fileName string, o Options) (int64, error) {
	vsize, err := o.virtualSize(size)
	if err != nil {
		return 0, err
	}
	capacity := uint64(vsize / sector)
	numGT := (capacity + grainSectors*gtesPerGT - 1) / (grainSectors * gtesPerGT)
	gdSectors := (numGT*4 + sector - 1) / sector
	rgdOffset := uint64(1 + descSectors)
	gdOffset := rgdOffset + gdSectors + numGT*gtSectors
	overhead := (gdOffset + gdSectors + numGT*gtSectors + grainSectors - 1) / grainSectors * grainSectors

	desc := vmdkDescriptor(o, "monolithicSparse", fileName, capacity)
	if len(desc) > descSectors*sector {
		return 0, fmt.Errorf("vmdk descriptor is %d bytes, more than its %d sectors", len(desc), descSectors)
	}
	gt := make([]uint32, numGT*gtesPerGT)
	next := overhead
	err = chunks(src, size, vsize, grainBytes, func(i int64, b []byte) error {
		if b == nil {
			return nil
		}
		if next > 0xffffffff {
			return fmt.Errorf("vmdk grain offset %d beyond 2 TiB: %w", next, ErrSize)
		}
		if _, err := dst.WriteAt(b, int64(next)*sector); err != nil {
			return fmt.Errorf("writing vmdk grain: %w", err)
		}
		gt[i] = uint32(next)
		next += grainSectors
		return nil
	})
	if err != nil {
		return 0, err
	}
	meta := make([]byte, overhead*sector)
	copy(meta, vmdkHeader{
		version: 1, flags: flagNewlineTest | flagRedundantGT, capacity: capacity,
		descOffset: 1, descSize: descSectors, rgdOffset: rgdOffset, gdOffset: gdOffset, overhead: overhead,
	}.bytes())
	copy(meta[sector:], desc)
	le := binary.LittleEndian
	// The redundant copy and the primary: a directory, then its tables.
	for _, dir := range []uint64{rgdOffset, gdOffset} {
		tables := dir + gdSectors
		for i := range numGT {
			le.PutUint32(meta[dir*sector+i*4:], uint32(tables+i*gtSectors))
		}
		for i, e := range gt {
			le.PutUint32(meta[tables*sector+uint64(i)*4:], e)
		}
	}
	if _, err := dst.WriteAt(meta, 0); err != nil {
		return 0, fmt.Errorf("writing vmdk metadata: %w", err)
	}
	return int64(next) * sector, nil
}

// WriteStreamVMDK writes a streamOptimized VMDK (the format OVF packages carry):
// header, embedded descriptor, zlib-compressed grains each behind a marker in LBA
// order, each grain table after its grains, the grain directory, a footer holding
// the directory's offset, and the end-of-stream marker. Written sequentially, so
// dst may be any stream. It returns the bytes written.
func WriteStreamVMDK(dst io.Writer, src io.ReaderAt, size int64, fileName string, o Options) (int64, error) {
	n, _, err := writeStreamVMDK(dst, src, size, fileName, o)
	return n, err
}

// writeStreamVMDK is WriteStreamVMDK, also returning the bytes of non-zero grains.
func writeStreamVMDK(dst io.Writer, src io.ReaderAt, size int64, fileName string, o Options) (n, populated int64, err error) {
	vsize, err := o.virtualSize(size)
	if err != nil {
		return 0, 0, err
	}
	capacity := uint64(vsize / sector)
	numGT := (capacity + grainSectors*gtesPerGT - 1) / (grainSectors * gtesPerGT)
	gdSectors := (numGT*4 + sector - 1) / sector
	desc := vmdkDescriptor(o, "streamOptimized", fileName, capacity)
	if len(desc) > descSectors*sector {
		return 0, 0, fmt.Errorf("vmdk descriptor is %d bytes, more than its %d sectors", len(desc), descSectors)
	}
	const overhead = grainSectors // grains start at 64 KiB
	hdr := vmdkHeader{
		version: 3, flags: flagNewlineTest | flagCompressed | flagMarkers, capacity: capacity,
		descOffset: 1, descSize: descSectors, gdOffset: gdAtEnd, overhead: overhead, compressAlgo: compressDeflate,
	}
	w := &sectorWriter{w: dst}
	head := make([]byte, overhead*sector)
	copy(head, hdr.bytes())
	copy(head[sector:], desc)
	w.write(head)

	le := binary.LittleEndian
	gd := make([]byte, gdSectors*sector)
	gt := make([]byte, gtSectors*sector)
	flushGT := func(n uint64) {
		w.write(marker(gtSectors, markerGT))
		le.PutUint32(gd[n*4:], uint32(w.off/sector))
		w.write(gt)
		clear(gt)
	}
	var zbuf bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&zbuf, zlib.BestSpeed)
	gtOf := uint64(0)
	err = chunks(src, size, vsize, grainBytes, func(i int64, b []byte) error {
		if n := uint64(i) / gtesPerGT; n != gtOf {
			flushGT(gtOf)
			gtOf = n
		}
		if b == nil || w.err != nil {
			return w.err
		}
		zbuf.Reset()
		zw.Reset(&zbuf)
		if _, err := zw.Write(b); err != nil {
			return fmt.Errorf("compressing vmdk grain: %w", err)
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("compressing vmdk grain: %w", err)
		}
		if w.off/sector > 0xffffffff {
			return fmt.Errorf("vmdk grain offset beyond 2 TiB: %w", ErrSize)
		}
		le.PutUint32(gt[(uint64(i)%gtesPerGT)*4:], uint32(w.off/sector))
		m := make([]byte, 12, 12+zbuf.Len())
		le.PutUint64(m[0:], uint64(i)*grainSectors)
		le.PutUint32(m[8:], uint32(zbuf.Len()))
		w.write(append(m, zbuf.Bytes()...))
		populated += grainBytes
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	flushGT(gtOf)
	w.write(marker(gdSectors, markerGD))
	hdr.gdOffset = uint64(w.off / sector)
	w.write(gd)
	w.write(marker(1, markerFooter))
	w.write(hdr.bytes())
	w.write(marker(0, markerEOS))
	if w.err != nil {
		return 0, 0, fmt.Errorf("writing stream vmdk: %w", w.err)
	}
	return w.off, populated, nil
}

// marker returns a metadata marker sector: numSectors, size 0, type.
func marker(numSectors uint64, typ uint32) []byte {
	b := make([]byte, sector)
	binary.LittleEndian.PutUint64(b[0:], numSectors)
	binary.LittleEndian.PutUint32(b[12:], typ)
	return b
}

// sectorWriter writes records padded to whole sectors and remembers the first error.
type sectorWriter struct {
	w   io.Writer
	off int64
	err error
}

func (s *sectorWriter) write(b []byte) {
	if s.err != nil {
		return
	}
	if pad := len(b) % sector; pad != 0 {
		b = append(b, make([]byte, sector-pad)...)
	}
	n, err := s.w.Write(b)
	s.off += int64(n)
	s.err = err
}
