// Package esp writes the EFI system partition: a FAT32 filesystem built in one
// pass from an in-memory file list. Unlike go-diskfs (which stamps the wall clock
// into directory entries unless SOURCE_DATE_EPOCH is set in the process
// environment) every byte here follows from the inputs, so two builds match.
// Files are stored contiguously; names that are not upper-case 8.3 get VFAT long
// names.
package esp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf16"
)

// File is one file of the filesystem.
type File struct {
	Path string // slash-separated, e.g. "EFI/BOOT/BOOTX64.EFI"
	Data []byte
}

// Options describes the filesystem.
type Options struct {
	Size        int64     // bytes, a multiple of 512
	VolumeID    uint32    // serial number
	Label       string    // up to 11 characters, upper case
	HiddenSecs  uint32    // LBA of the partition start (BPB hidden sectors)
	ModTime     time.Time // stamped on every entry; zero means 1980-01-01
	ClusterSize int       // bytes; 0 picks 512 up to 260 MiB, 4096 above (like mkfs.fat)
}

const (
	sectorSize   = 512
	reservedSecs = 32
	numFATs      = 2
	rootCluster  = 2
	dirEntrySize = 32
	attrVolumeID = 0x08
	attrDir      = 0x10
	attrArchive  = 0x20
	attrLFN      = 0x0f
	minClusters  = 65525
	maxClusters  = 0x0ffffff5
)

// ErrTooSmall marks contents that do not fit the filesystem size.
var ErrTooSmall = errors.New("files do not fit in the FAT32 filesystem")

// node is a file or directory of the tree being written.
type node struct {
	name     string
	dir      bool
	data     []byte
	children []*node // directories: sorted by name
	parent   *node
	cluster  uint32 // first cluster, 0 for an empty file
	clusters uint32
	short    [11]byte
}

// geometry is the computed layout of the filesystem.
type geometry struct {
	totalSecs   uint32
	secsPerClus uint32
	fatSecs     uint32
	clusters    uint32 // data clusters
}

func (g geometry) clusterBytes() int64 { return int64(g.secsPerClus) * sectorSize }

func (g geometry) dataStart() int64 {
	return int64(reservedSecs+numFATs*g.fatSecs) * sectorSize
}

func (g geometry) clusterOffset(c uint32) int64 {
	return g.dataStart() + int64(c-2)*g.clusterBytes()
}

func computeGeometry(o Options) (geometry, error) {
	if o.Size%sectorSize != 0 {
		return geometry{}, fmt.Errorf("FAT32 size %d is not a multiple of %d", o.Size, sectorSize)
	}
	cb := int64(o.ClusterSize)
	if cb == 0 {
		cb = 512
		if o.Size > 260<<20 {
			cb = 4096
		}
	}
	if cb < sectorSize || cb > 32768 || cb&(cb-1) != 0 {
		return geometry{}, fmt.Errorf("FAT32 cluster size %d: want a power of two from 512 to 32768", cb)
	}
	g := geometry{totalSecs: uint32(o.Size / sectorSize), secsPerClus: uint32(cb / sectorSize)}
	if int64(g.totalSecs)*sectorSize != o.Size {
		return geometry{}, fmt.Errorf("FAT32 size %d is too large", o.Size)
	}
	// Iterate: the FATs shrink the data area, which shrinks the FATs.
	avail := g.totalSecs - reservedSecs
	g.fatSecs = 1
	for range 8 {
		g.clusters = (avail - numFATs*g.fatSecs) / g.secsPerClus
		need := uint32((int64(g.clusters)+2)*4+sectorSize-1) / sectorSize
		if need <= g.fatSecs {
			break
		}
		g.fatSecs = need
	}
	g.clusters = (avail - numFATs*g.fatSecs) / g.secsPerClus
	if g.clusters < minClusters || g.clusters >= maxClusters {
		return geometry{}, fmt.Errorf("FAT32 of %d bytes with %d-byte clusters has %d clusters, want %d to %d: change the size or cluster size",
			o.Size, cb, g.clusters, minClusters, maxClusters-1)
	}
	return g, nil
}

// Write writes the filesystem to w at offset off. The region is assumed to read
// as zeros where nothing is written (a freshly created image file).
func Write(w io.WriterAt, off int64, o Options, files []File) error {
	g, err := computeGeometry(o)
	if err != nil {
		return err
	}
	root, err := buildTree(files)
	if err != nil {
		return err
	}
	fat := make([]uint32, g.clusters+2)
	fat[0] = 0x0ffffff8
	fat[1] = 0x0fffffff
	next := uint32(rootCluster)
	alloc := func(n *node, size int64) error {
		c := uint32((size + g.clusterBytes() - 1) / g.clusterBytes())
		if n.dir && c == 0 {
			c = 1
		}
		if c == 0 {
			return nil
		}
		if int64(next)+int64(c) > int64(g.clusters)+2 {
			return fmt.Errorf("allocating %s: %w (%d bytes)", n.name, ErrTooSmall, o.Size)
		}
		n.cluster, n.clusters = next, c
		for i := range c - 1 {
			fat[next+i] = next + i + 1
		}
		fat[next+c-1] = 0x0fffffff
		next += c
		return nil
	}
	// Directories first (breadth first), then file data, in path order.
	var dirs, regular []*node
	queue := []*node{root}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		dirs = append(dirs, d)
		if err := assignShortNames(d); err != nil {
			return err
		}
		for _, c := range d.children {
			if c.dir {
				queue = append(queue, c)
			} else {
				regular = append(regular, c)
			}
		}
	}
	label := fmt.Sprintf("%-11.11s", strings.ToUpper(o.Label))
	if strings.TrimSpace(o.Label) == "" {
		label = "NO NAME    "
	}
	for _, d := range dirs {
		if err := alloc(d, int64(dirEntryCount(d, d == root && label != "NO NAME    "))*dirEntrySize); err != nil {
			return err
		}
	}
	for _, f := range regular {
		if err := alloc(f, int64(len(f.data))); err != nil {
			return err
		}
	}
	stamp := fatTimestamp(o.ModTime)
	for _, d := range dirs {
		buf := renderDir(d, d == root, label, stamp)
		if _, err := w.WriteAt(buf, off+g.clusterOffset(d.cluster)); err != nil {
			return fmt.Errorf("writing directory %s: %w", d.name, err)
		}
	}
	for _, f := range regular {
		if f.cluster == 0 {
			continue
		}
		if _, err := w.WriteAt(f.data, off+g.clusterOffset(f.cluster)); err != nil {
			return fmt.Errorf("writing %s: %w", f.name, err)
		}
	}
	fatBytes := make([]byte, int64(g.fatSecs)*sectorSize)
	for i, v := range fat {
		binary.LittleEndian.PutUint32(fatBytes[i*4:], v)
	}
	for i := range numFATs {
		at := off + int64(reservedSecs+uint32(i)*g.fatSecs)*sectorSize
		if _, err := w.WriteAt(fatBytes, at); err != nil {
			return fmt.Errorf("writing FAT: %w", err)
		}
	}
	free := g.clusters + 2 - next
	boot := bootSector(g, o, label)
	info := fsInfo(free, next)
	for _, base := range []int64{0, 6} {
		if _, err := w.WriteAt(boot, off+base*sectorSize); err != nil {
			return fmt.Errorf("writing boot sector: %w", err)
		}
		if _, err := w.WriteAt(info, off+(base+1)*sectorSize); err != nil {
			return fmt.Errorf("writing FSInfo sector: %w", err)
		}
		sig := make([]byte, sectorSize)
		sig[510], sig[511] = 0x55, 0xaa
		if _, err := w.WriteAt(sig, off+(base+2)*sectorSize); err != nil {
			return fmt.Errorf("writing boot sector: %w", err)
		}
	}
	return nil
}

func buildTree(files []File) (*node, error) {
	root := &node{dir: true}
	find := func(d *node, name string) *node {
		for _, c := range d.children {
			if strings.EqualFold(c.name, name) {
				return c
			}
		}
		return nil
	}
	for _, f := range files {
		p := strings.Trim(path.Clean("/"+f.Path), "/")
		if p == "" {
			return nil, fmt.Errorf("ESP file %q: empty path", f.Path)
		}
		parts := strings.Split(p, "/")
		d := root
		for i, part := range parts {
			if err := validName(part); err != nil {
				return nil, fmt.Errorf("ESP file %q: %w", f.Path, err)
			}
			c := find(d, part)
			last := i == len(parts)-1
			switch {
			case c == nil:
				c = &node{name: part, dir: !last, parent: d}
				if last {
					c.data = f.Data
				}
				d.children = append(d.children, c)
			case last || !c.dir:
				return nil, fmt.Errorf("ESP file %q collides with another file (FAT names ignore case)", f.Path)
			}
			d = c
		}
	}
	var sortTree func(d *node)
	sortTree = func(d *node) {
		slices.SortFunc(d.children, func(a, b *node) int { return strings.Compare(a.name, b.name) })
		for _, c := range d.children {
			if c.dir {
				sortTree(c)
			}
		}
	}
	sortTree(root)
	return root, nil
}

func validName(n string) error {
	if n == "." || n == ".." || len(n) > 255 {
		return fmt.Errorf("invalid FAT name %q", n)
	}
	for _, r := range n {
		if r < 0x20 || r > 0x7e || strings.ContainsRune(`"*/:<>?\|`, r) {
			return fmt.Errorf("FAT name %q: only printable ASCII without \"*/:<>?\\| is supported", n)
		}
	}
	return nil
}

// shortChars are the characters allowed in an 8.3 name besides A-Z and 0-9.
const shortChars = "!#$%&'()-@^_`{}~"

func shortClean(s string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || strings.ContainsRune(shortChars, r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// exact83 returns the 8.3 form of a name that is already a valid upper-case 8.3 name.
func exact83(name string) ([11]byte, bool) {
	var s [11]byte
	base, ext, _ := strings.Cut(name, ".")
	if strings.Contains(ext, ".") || base == "" || len(base) > 8 || len(ext) > 3 ||
		shortClean(base) != strings.ToUpper(base) || shortClean(ext) != strings.ToUpper(ext) {
		return s, false
	}
	copy(s[:], fmt.Sprintf("%-8s%-3s", strings.ToUpper(base), strings.ToUpper(ext)))
	return s, true
}

// needsLFN reports whether a name must be stored as a long name.
func needsLFN(name string) bool {
	_, ok := exact83(name)
	return !ok || name != strings.ToUpper(name)
}

func assignShortNames(d *node) error {
	used := map[[11]byte]bool{}
	for _, c := range d.children {
		if s, ok := exact83(c.name); ok {
			c.short = s
			used[s] = true
		}
	}
	for _, c := range d.children {
		if _, ok := exact83(c.name); ok {
			continue
		}
		base, ext := c.name, ""
		if i := strings.LastIndex(c.name, "."); i > 0 {
			base, ext = c.name[:i], c.name[i+1:]
		}
		base, ext = shortClean(base), shortClean(ext)
		if len(ext) > 3 {
			ext = ext[:3]
		}
		if base == "" {
			base = "FILE"
		}
		found := false
		for n := 1; n < 1000000 && !found; n++ {
			tail := fmt.Sprintf("~%d", n)
			b := base
			if len(b) > 8-len(tail) {
				b = b[:8-len(tail)]
			}
			var s [11]byte
			copy(s[:], fmt.Sprintf("%-8s%-3s", b+tail, ext))
			if !used[s] {
				c.short, used[s], found = s, true, true
			}
		}
		if !found {
			return fmt.Errorf("no free short name for %s", c.name)
		}
	}
	return nil
}

func lfnSlots(name string) int { return (len(utf16.Encode([]rune(name))) + 12) / 13 }

func dirEntryCount(d *node, withLabel bool) int {
	n := 0
	if d.parent != nil {
		n += 2 // "." and ".."
	}
	if withLabel {
		n++
	}
	for _, c := range d.children {
		n++
		if needsLFN(c.name) {
			n += lfnSlots(c.name)
		}
	}
	return n
}

type timestamp struct{ date, time uint16 }

func fatTimestamp(t time.Time) timestamp {
	if t.IsZero() || t.Year() < 1980 {
		return timestamp{date: 1<<5 | 1} // 1980-01-01 00:00:00
	}
	t = t.UTC()
	return timestamp{
		date: uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day()),
		time: uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2),
	}
}

func shortEntry(name [11]byte, attr byte, cluster, size uint32, ts timestamp) []byte {
	e := make([]byte, dirEntrySize)
	copy(e, name[:])
	e[11] = attr
	binary.LittleEndian.PutUint16(e[14:], ts.time)
	binary.LittleEndian.PutUint16(e[16:], ts.date)
	binary.LittleEndian.PutUint16(e[18:], ts.date)
	binary.LittleEndian.PutUint16(e[20:], uint16(cluster>>16))
	binary.LittleEndian.PutUint16(e[22:], ts.time)
	binary.LittleEndian.PutUint16(e[24:], ts.date)
	binary.LittleEndian.PutUint16(e[26:], uint16(cluster))
	binary.LittleEndian.PutUint32(e[28:], size)
	return e
}

func lfnEntries(name string, short [11]byte) []byte {
	var sum byte
	for _, c := range short {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	u := utf16.Encode([]rune(name))
	slots := (len(u) + 12) / 13
	padded := make([]uint16, slots*13)
	for i := range padded {
		switch {
		case i < len(u):
			padded[i] = u[i]
		case i == len(u):
			padded[i] = 0
		default:
			padded[i] = 0xffff
		}
	}
	var out []byte
	for s := slots; s >= 1; s-- {
		e := make([]byte, dirEntrySize)
		e[0] = byte(s)
		if s == slots {
			e[0] |= 0x40
		}
		e[11] = attrLFN
		e[13] = sum
		chars := padded[(s-1)*13 : s*13]
		for i, c := range chars {
			var at int
			switch {
			case i < 5:
				at = 1 + 2*i
			case i < 11:
				at = 14 + 2*(i-5)
			default:
				at = 28 + 2*(i-11)
			}
			binary.LittleEndian.PutUint16(e[at:], c)
		}
		out = append(out, e...)
	}
	return out
}

func renderDir(d *node, isRoot bool, label string, ts timestamp) []byte {
	var buf []byte
	if isRoot {
		if label != "NO NAME    " {
			var l [11]byte
			copy(l[:], label)
			buf = append(buf, shortEntry(l, attrVolumeID, 0, 0, ts)...)
		}
	} else {
		var dot, dotdot [11]byte
		copy(dot[:], ".          ")
		copy(dotdot[:], "..         ")
		buf = append(buf, shortEntry(dot, attrDir, d.cluster, 0, ts)...)
		parent := d.parent.cluster
		if d.parent.parent == nil {
			parent = 0 // ".." of a top-level directory points at cluster 0
		}
		buf = append(buf, shortEntry(dotdot, attrDir, parent, 0, ts)...)
	}
	for _, c := range d.children {
		if needsLFN(c.name) {
			buf = append(buf, lfnEntries(c.name, c.short)...)
		}
		if c.dir {
			buf = append(buf, shortEntry(c.short, attrDir, c.cluster, 0, ts)...)
		} else {
			buf = append(buf, shortEntry(c.short, attrArchive, c.cluster, uint32(len(c.data)), ts)...)
		}
	}
	return buf
}

func bootSector(g geometry, o Options, label string) []byte {
	b := make([]byte, sectorSize)
	copy(b[0:], []byte{0xeb, 0x58, 0x90})
	copy(b[3:], "mkfs.fat")
	binary.LittleEndian.PutUint16(b[11:], sectorSize)
	b[13] = byte(g.secsPerClus)
	binary.LittleEndian.PutUint16(b[14:], reservedSecs)
	b[16] = numFATs
	b[21] = 0xf8 // fixed disk
	binary.LittleEndian.PutUint16(b[24:], 32)
	binary.LittleEndian.PutUint16(b[26:], 64)
	binary.LittleEndian.PutUint32(b[28:], o.HiddenSecs)
	binary.LittleEndian.PutUint32(b[32:], g.totalSecs)
	binary.LittleEndian.PutUint32(b[36:], g.fatSecs)
	binary.LittleEndian.PutUint32(b[44:], rootCluster)
	binary.LittleEndian.PutUint16(b[48:], 1) // FSInfo sector
	binary.LittleEndian.PutUint16(b[50:], 6) // backup boot sector
	b[64] = 0x80
	b[66] = 0x29
	binary.LittleEndian.PutUint32(b[67:], o.VolumeID)
	copy(b[71:82], label)
	copy(b[82:90], "FAT32   ")
	// Boot code: "int 0x18" style non-bootable stub is unnecessary for UEFI; a halt loop.
	copy(b[90:], []byte{0xf4, 0xeb, 0xfd})
	b[510], b[511] = 0x55, 0xaa
	return b
}

func fsInfo(free, nextFree uint32) []byte {
	b := make([]byte, sectorSize)
	binary.LittleEndian.PutUint32(b[0:], 0x41615252)
	binary.LittleEndian.PutUint32(b[484:], 0x61417272)
	binary.LittleEndian.PutUint32(b[488:], free)
	binary.LittleEndian.PutUint32(b[492:], nextFree)
	binary.LittleEndian.PutUint32(b[508:], 0xaa550000)
	return b
}
