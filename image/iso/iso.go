// Package iso writes kiln's hybrid ISO 9660 image: plain ISO 9660 (upper-case
// 8.3-style names, no Rock Ridge or Joliet: GRUB, the firmware and kiln's own
// reader need nothing more), El Torito boot records for BIOS (no emulation,
// boot info table filled in) and UEFI (an EFI System Partition image), and a
// protective MBR plus GPT in the system area whose one partition is that ESP
// image, so the same file boots as a CD-ROM and dd'ed to a stick. Every byte
// follows from the inputs: fixed dates, no random identifiers.
package iso

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// BlockSize is ISO 9660's logical block size.
const BlockSize = 2048

// sector is the 512-byte sector of the hybrid MBR/GPT and of El Torito's load counts.
const sector = 512

// File is one file of the image.
type File struct {
	// Path is slash-separated, upper-case d-characters (A-Z 0-9 _) with at most
	// one dot in the last element: "BOOT/GRUB/GRUB.CFG". Directories are implied.
	Path string
	// Data is the content; Source names a file to copy instead (large payloads).
	Data   []byte
	Source string
}

// Options describe the volume and its boot records.
type Options struct {
	VolumeID    string    // up to 32 d-characters ("KILN")
	VolumeSetID string    // up to 128 d-characters: kiln's live medium ID
	Publisher   string    // up to 128 a-characters
	Application string    // up to 128 a-characters
	Time        time.Time // every date in the image
	// BIOSBoot is the path (in the image) of an x86 no-emulation boot file, e.g.
	// GRUB's i386-pc-eltorito image; its boot info table (bytes 8-63) is filled in.
	BIOSBoot string
	// BIOSLoadSectors is how many 512-byte sectors the BIOS loads (default 4).
	BIOSLoadSectors uint16
	// EFIBoot is the path (in the image) of a FAT EFI System Partition image.
	EFIBoot string
	// Hybrid, when set, writes a protective MBR and a GPT whose partition 1 is
	// the EFIBoot image (type ESP), so firmware booting the file as a disk finds it.
	Hybrid *Hybrid
}

// Hybrid names the GPT's identifiers. The MBR's boot code (bytes 0-439) is
// left zero for the caller to fill (image/bios.go puts GRUB's there).
type Hybrid struct {
	DiskGUID string // GPT disk GUID
	ESPGUID  string // partition 1's unique GUID
	ESPName  string // partition 1's name
}

// Extent is where a file's bytes are in the image.
type Extent struct {
	Block uint32
	Size  int64
}

// Offset is the extent's first byte.
func (e Extent) Offset() int64 { return int64(e.Block) * BlockSize }

// Layout is what Write placed where.
type Layout struct {
	Blocks uint32            // image size in blocks (volume space, the GPT trailer included)
	Files  map[string]Extent // by File.Path
}

// Size is the image's size in bytes.
func (l Layout) Size() int64 { return int64(l.Blocks) * BlockSize }

// trailerBlocks hold the backup GPT (33 sectors) at the end of a hybrid image.
const trailerBlocks = 16

type dirNode struct {
	path     string // "" for the root, else "BOOT/GRUB"
	name     string
	parent   *dirNode
	dirs     []*dirNode
	files    []*fileNode
	number   int // path table number (1 = root)
	block    uint32
	size     uint32
	children []record // sorted: what the directory's records list after . and ..
}

type fileNode struct {
	f     File
	name  string // "GRUB.CFG;1"
	size  int64
	block uint32
}

type record struct {
	name string // identifier as written
	dir  *dirNode
	file *fileNode
}

// Write writes the image to out (created or truncated) and returns its layout.
func Write(out string, o Options, files []File) (*Layout, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	root := &dirNode{number: 1}
	dirs := map[string]*dirNode{"": root}
	byPath := map[string]*fileNode{}
	for _, f := range files {
		if err := checkPath(f.Path); err != nil {
			return nil, err
		}
		if _, dup := byPath[f.Path]; dup {
			return nil, fmt.Errorf("iso: file %s listed twice", f.Path)
		}
		size := int64(len(f.Data))
		if f.Source != "" {
			st, err := os.Stat(f.Source)
			if err != nil {
				return nil, fmt.Errorf("iso: %s: %w", f.Path, err)
			}
			size = st.Size()
		}
		if size >= 1<<32 {
			return nil, fmt.Errorf("iso: %s is %d bytes; ISO 9660 extents stop at 4 GiB", f.Path, size)
		}
		dir, base := path.Split(f.Path)
		d := mkdirAll(dirs, strings.TrimSuffix(dir, "/"))
		if _, clash := dirs[f.Path]; clash {
			return nil, fmt.Errorf("iso: %s is both a file and a directory", f.Path)
		}
		name := base
		if !strings.Contains(name, ".") {
			name += "."
		}
		fn := &fileNode{f: f, name: name + ";1", size: size}
		d.files = append(d.files, fn)
		byPath[f.Path] = fn
	}
	for p := range byPath {
		if _, clash := dirs[p]; clash {
			return nil, fmt.Errorf("iso: %s is both a file and a directory", p)
		}
	}
	for _, name := range []string{o.BIOSBoot, o.EFIBoot} {
		if name != "" && byPath[name] == nil {
			return nil, fmt.Errorf("iso: boot file %s is not among the files", name)
		}
	}
	if o.BIOSBoot != "" && byPath[o.BIOSBoot].f.Source != "" {
		return nil, fmt.Errorf("iso: BIOS boot file %s must be given as Data (its boot info table is patched)", o.BIOSBoot)
	}

	// Path table order: breadth first, each level by parent number then name.
	order := []*dirNode{root}
	for i := 0; i < len(order); i++ {
		d := order[i]
		sort.Slice(d.dirs, func(a, b int) bool { return d.dirs[a].name < d.dirs[b].name })
		for _, c := range d.dirs {
			c.number = len(order) + 1
			order = append(order, c)
		}
	}
	ptSize := 0
	for _, d := range order {
		ptSize += ptRecordLen(d)
	}
	ptBlocks := uint32((ptSize + BlockSize - 1) / BlockSize)

	next := uint32(16) // volume descriptors: PVD, boot record, terminator
	pvdBlock := next
	next++
	bootRecord := uint32(0)
	if o.BIOSBoot != "" || o.EFIBoot != "" {
		bootRecord = next
		next++
	}
	next++ // terminator
	lPT := next
	next += ptBlocks
	mPT := next
	next += ptBlocks
	catalog := uint32(0)
	if bootRecord != 0 {
		catalog = next
		next++
	}
	for _, d := range order {
		d.children = nil
		for _, c := range d.dirs {
			d.children = append(d.children, record{name: c.name, dir: c})
		}
		for _, f := range d.files {
			d.children = append(d.children, record{name: f.name, file: f})
		}
		sort.Slice(d.children, func(a, b int) bool { return d.children[a].name < d.children[b].name })
		d.size = dirSize(d)
		d.block = next
		next += d.size / BlockSize
	}
	// Files in path order after the boot files (BIOS first: old BIOSes reach only so far).
	var all []*fileNode
	for _, fn := range byPath {
		all = append(all, fn)
	}
	rank := func(f *fileNode) int {
		switch f.f.Path {
		case o.BIOSBoot:
			return 0
		case o.EFIBoot:
			return 1
		}
		return 2
	}
	sort.Slice(all, func(a, b int) bool {
		if ra, rb := rank(all[a]), rank(all[b]); ra != rb {
			return ra < rb
		}
		return all[a].f.Path < all[b].f.Path
	})
	for _, fn := range all {
		fn.block = next
		next += uint32((fn.size + BlockSize - 1) / BlockSize)
		if fn.size == 0 {
			fn.block = 0 // ISO convention for empty files
		}
	}
	if o.Hybrid != nil {
		next += trailerBlocks
	}
	lay := &Layout{Blocks: next, Files: map[string]Extent{}}
	for p, fn := range byPath {
		lay.Files[p] = Extent{Block: fn.block, Size: fn.size}
	}

	f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("iso: creating %s: %w", out, err)
	}
	defer f.Close()
	if err := f.Truncate(lay.Size()); err != nil {
		return nil, fmt.Errorf("iso: sizing %s: %w", out, err)
	}
	w := &blockWriter{f: f}
	w.put(pvdBlock, o.pvd(lay.Blocks, uint32(ptSize), lPT, mPT, root))
	if bootRecord != 0 {
		w.put(bootRecord, bootRecordDescriptor(catalog))
	}
	term := pvdBlock + 1
	if bootRecord != 0 {
		term++
	}
	w.put(term, terminator())
	w.put(lPT, pathTable(order, binary.LittleEndian))
	w.put(mPT, pathTable(order, binary.BigEndian))
	if catalog != 0 {
		bios, efi := Extent{}, Extent{}
		if o.BIOSBoot != "" {
			bios = lay.Files[o.BIOSBoot]
		}
		if o.EFIBoot != "" {
			efi = lay.Files[o.EFIBoot]
		}
		cat, err := bootCatalog(bios, o.biosLoad(), efi)
		if err != nil {
			return nil, err
		}
		w.put(catalog, cat)
	}
	for _, d := range order {
		w.put(d.block, o.dirBytes(d))
	}
	for _, fn := range all {
		if fn.size == 0 {
			continue
		}
		if fn.f.Source != "" {
			w.copyFile(fn.block, fn.f.Source, fn.size)
			continue
		}
		data := fn.f.Data
		if fn.f.Path == o.BIOSBoot {
			if data, err = bootInfoTable(data, pvdBlock, fn.block); err != nil {
				return nil, err
			}
		}
		w.put(fn.block, data)
	}
	if o.Hybrid != nil {
		if err := writeHybrid(w, lay, o.Hybrid, lay.Files[o.EFIBoot]); err != nil {
			return nil, err
		}
	}
	if w.err != nil {
		return nil, fmt.Errorf("iso: writing %s: %w", out, w.err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("iso: closing %s: %w", out, err)
	}
	return lay, nil
}

func (o Options) validate() error {
	var errs []error
	check := func(field, v string, max int, dchars bool) {
		if len(v) > max {
			errs = append(errs, fmt.Errorf("iso: %s %q is longer than %d characters", field, v, max))
		}
		for _, r := range v {
			if dchars && !isDChar(r) || !dchars && (r < 0x20 || r > 0x7e) {
				errs = append(errs, fmt.Errorf("iso: %s %q: use only A-Z, 0-9 and _", field, v))
				break
			}
		}
	}
	check("volume ID", o.VolumeID, 32, true)
	check("volume set ID", o.VolumeSetID, 128, true)
	check("publisher", o.Publisher, 128, false)
	check("application", o.Application, 128, false)
	if o.Hybrid != nil && o.EFIBoot == "" {
		errs = append(errs, errors.New("iso: a hybrid image needs an EFI boot image for its GPT partition"))
	}
	if y := o.Time.UTC().Year(); y < 1900 || y > 2155 {
		errs = append(errs, fmt.Errorf("iso: time %s is outside ISO 9660's 1900-2155", o.Time))
	}
	return errors.Join(errs...)
}

func (o Options) biosLoad() uint16 {
	if o.BIOSLoadSectors == 0 {
		return 4
	}
	return o.BIOSLoadSectors
}

func isDChar(r rune) bool { return r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' }

// checkPath accepts upper-case d-character names up to 30 characters (ISO 9660
// level 2), one dot allowed in the file name.
func checkPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return fmt.Errorf("iso: path %q: want a relative path like BOOT/VMLINUZ", p)
	}
	parts := strings.Split(p, "/")
	if len(parts) > 8 {
		return fmt.Errorf("iso: path %s is deeper than ISO 9660's 8 levels", p)
	}
	for i, part := range parts {
		last := i == len(parts)-1
		if part == "" || len(part) > 30 || strings.Count(part, ".") > boolInt(last) {
			return fmt.Errorf("iso: path %s: element %q must be 1-30 characters (one dot only in the file name)", p, part)
		}
		for _, r := range part {
			if !isDChar(r) && r != '.' {
				return fmt.Errorf("iso: path %s: use only A-Z, 0-9, _ (and one dot in the file name)", p)
			}
		}
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func mkdirAll(dirs map[string]*dirNode, p string) *dirNode {
	if d, ok := dirs[p]; ok {
		return d
	}
	parentPath, name := path.Split(p)
	parent := mkdirAll(dirs, strings.TrimSuffix(parentPath, "/"))
	d := &dirNode{path: p, name: name, parent: parent}
	parent.dirs = append(parent.dirs, d)
	dirs[p] = d
	return d
}

func recordLen(name string) int {
	n := 33 + len(name)
	return n + n%2
}

// dirSize lays out a directory's records (never across a block) and returns
// its size in whole blocks.
func dirSize(d *dirNode) uint32 {
	used, blocks := 0, 1
	add := func(n int) {
		if used+n > BlockSize {
			blocks++
			used = 0
		}
		used += n
	}
	add(34) // "."
	add(34) // ".."
	for _, c := range d.children {
		add(recordLen(c.name))
	}
	return uint32(blocks * BlockSize)
}

func (o Options) dirBytes(d *dirNode) []byte {
	b := make([]byte, d.size)
	off := 0
	add := func(rec []byte) {
		if off%BlockSize+len(rec) > BlockSize {
			off = (off/BlockSize + 1) * BlockSize
		}
		copy(b[off:], rec)
		off += len(rec)
	}
	parent := d.parent
	if parent == nil {
		parent = d
	}
	add(o.dirRecord("\x00", d.block, int64(d.size), true))
	add(o.dirRecord("\x01", parent.block, int64(parent.size), true))
	for _, c := range d.children {
		if c.dir != nil {
			add(o.dirRecord(c.name, c.dir.block, int64(c.dir.size), true))
		} else {
			add(o.dirRecord(c.name, c.file.block, c.file.size, false))
		}
	}
	return b
}

func (o Options) dirRecord(name string, block uint32, size int64, dir bool) []byte {
	r := make([]byte, recordLen(name))
	r[0] = byte(len(r))
	both32(r[2:], block)
	both32(r[10:], uint32(size))
	copy(r[18:25], recordDate(o.Time))
	if dir {
		r[25] = 2
	}
	both16(r[28:], 1) // volume sequence number
	r[32] = byte(len(name))
	copy(r[33:], name)
	return r
}

func recordDate(t time.Time) []byte {
	t = t.UTC()
	return []byte{byte(t.Year() - 1900), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0}
}

func descriptorDate(t time.Time) []byte {
	b := []byte(t.UTC().Format("20060102150405") + "00")
	return append(b, 0)
}

func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

func padded(b []byte, s string) {
	for i := range b {
		b[i] = ' '
	}
	copy(b, s)
}

func (o Options) pvd(blocks, ptSize, lPT, mPT uint32, root *dirNode) []byte {
	d := make([]byte, BlockSize)
	d[0] = 1
	copy(d[1:], "CD001")
	d[6] = 1
	padded(d[8:40], "")
	padded(d[40:72], o.VolumeID)
	both32(d[80:], blocks)
	both16(d[120:], 1) // volume set size
	both16(d[124:], 1) // volume sequence number
	both16(d[128:], BlockSize)
	both32(d[132:], ptSize)
	binary.LittleEndian.PutUint32(d[140:], lPT)
	binary.BigEndian.PutUint32(d[148:], mPT)
	copy(d[156:190], o.dirRecord("\x00", root.block, int64(root.size), true))
	padded(d[190:318], o.VolumeSetID)
	padded(d[318:446], o.Publisher)
	padded(d[446:574], "")
	padded(d[574:702], o.Application)
	padded(d[702:813], "") // copyright, abstract, bibliographic file identifiers
	copy(d[813:], descriptorDate(o.Time))
	copy(d[830:], descriptorDate(o.Time))
	copy(d[847:], "0000000000000000") // no expiration
	copy(d[864:], descriptorDate(o.Time))
	d[881] = 1 // file structure version
	return d
}

func bootRecordDescriptor(catalog uint32) []byte {
	d := make([]byte, BlockSize)
	copy(d[1:], "CD001")
	d[6] = 1
	copy(d[7:], "EL TORITO SPECIFICATION")
	binary.LittleEndian.PutUint32(d[71:], catalog)
	return d
}

func terminator() []byte {
	d := make([]byte, BlockSize)
	d[0] = 255
	copy(d[1:], "CD001")
	d[6] = 1
	return d
}

func ptRecordLen(d *dirNode) int {
	n := len(d.name)
	if d.parent == nil {
		n = 1
	}
	return 8 + n + n%2
}

func pathTable(order []*dirNode, bo binary.ByteOrder) []byte {
	var b bytes.Buffer
	for _, d := range order {
		name, parent := d.name, 1
		if d.parent == nil {
			name = "\x00"
		} else {
			parent = d.parent.number
		}
		r := make([]byte, ptRecordLen(d))
		r[0] = byte(len(name))
		bo.PutUint32(r[2:], d.block)
		bo.PutUint16(r[6:], uint16(parent))
		copy(r[8:], name)
		b.Write(r)
	}
	return b.Bytes()
}

// bootCatalog writes the validation entry, the BIOS entry as the initial entry
// and the EFI image as the one entry of a final UEFI section. A UEFI-only
// image has the EFI entry as its initial entry, platform 0xEF in the validation entry.
func bootCatalog(bios Extent, biosLoad uint16, efi Extent) ([]byte, error) {
	c := make([]byte, BlockSize)
	entry := func(e []byte, x Extent, sectors uint16) {
		e[0] = 0x88 // bootable
		e[1] = 0    // no emulation
		binary.LittleEndian.PutUint16(e[6:], sectors)
		binary.LittleEndian.PutUint32(e[8:], x.Block)
	}
	efiSectors := func() uint16 {
		n := (efi.Size + sector - 1) / sector
		if n > 0xffff {
			// Firmware (EDK2/OVMF) then takes the image to reach the end of the
			// medium; the FAT inside knows its own size.
			return 0
		}
		return uint16(n)
	}
	switch {
	case bios.Size > 0:
		c[1] = 0 // x86
		entry(c[32:64], bios, biosLoad)
		if efi.Size > 0 {
			h := c[64:96]
			h[0] = 0x91 // final section header
			h[1] = 0xEF
			binary.LittleEndian.PutUint16(h[2:], 1)
			entry(c[96:128], efi, efiSectors())
		}
	case efi.Size > 0:
		c[1] = 0xEF
		entry(c[32:64], efi, efiSectors())
	default:
		return nil, errors.New("iso: boot catalog without boot images")
	}
	c[0] = 1
	copy(c[4:28], "KILN")
	c[30], c[31] = 0x55, 0xAA
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(c[i:])
	}
	binary.LittleEndian.PutUint16(c[28:], -sum)
	return c, nil
}

// bootInfoTable fills in a no-emulation boot file's boot info table (as
// mkisofs -boot-info-table): the PVD's block, the file's block, its length and
// the 32-bit sum of its words from byte 64 on. GRUB's cdboot reads the rest of
// its core image with it.
func bootInfoTable(data []byte, pvd, block uint32) ([]byte, error) {
	if len(data) < 64 {
		return nil, fmt.Errorf("iso: BIOS boot file is %d bytes, too small for a boot info table", len(data))
	}
	b := append([]byte(nil), data...)
	var sum uint32
	tail := b[64:]
	for i := 0; i < len(tail); i += 4 {
		var w [4]byte
		copy(w[:], tail[i:])
		sum += binary.LittleEndian.Uint32(w[:])
	}
	binary.LittleEndian.PutUint32(b[8:], pvd)
	binary.LittleEndian.PutUint32(b[12:], block)
	binary.LittleEndian.PutUint32(b[16:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[20:], sum)
	clear(b[24:64])
	return b, nil
}

type blockWriter struct {
	f   *os.File
	err error
}

func (w *blockWriter) put(block uint32, b []byte) {
	if w.err != nil || len(b) == 0 {
		return
	}
	_, w.err = w.f.WriteAt(b, int64(block)*BlockSize)
}

func (w *blockWriter) writeAt(off int64, b []byte) {
	if w.err != nil {
		return
	}
	_, w.err = w.f.WriteAt(b, off)
}

func (w *blockWriter) copyFile(block uint32, src string, size int64) {
	if w.err != nil {
		return
	}
	in, err := os.Open(src)
	if err != nil {
		w.err = err
		return
	}
	defer in.Close()
	n, err := io.Copy(io.NewOffsetWriter(w.f, int64(block)*BlockSize), in)
	if err == nil && n != size {
		err = fmt.Errorf("%s changed size while being copied (%d, want %d bytes)", src, n, size)
	}
	w.err = err
}
