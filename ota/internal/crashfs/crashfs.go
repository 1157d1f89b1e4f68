// Package crashfs has fakes of an ESP (espfs.FS) and a block device that
// remember which writes are durable, can be told to crash after a number of
// operations, and then keep a random subset of what was not yet durable — the
// model the OTA crash-consistency tests check install, commit and rollback
// against. On the ESP a file's bytes are durable when WriteFile returns and a
// directory change (create, rename, remove) when SyncDir of its directory
// returns. A rename is modelled as vfat does it: it first creates the new
// directory entry empty (size and first cluster are filled in when the inode
// is written) and removes the old one, as separate blocks that survive a
// crash independently; espfs.Dir then fsyncs the renamed file, which makes
// the new entry durable with its bytes — a crash between the two steps can
// leave the old name, an empty new one, both or neither. On the disk,
// blocks written since the last Sync survive or not independently.
package crashfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"path"
	"sort"
	"strings"
)

// ErrCrashed is returned by every operation at and after the crash point.
var ErrCrashed = errors.New("crashed (simulated power loss)")

// Crasher counts mutating operations shared by the fakes of one machine and
// fails them from the crash point on.
type Crasher struct {
	// left is the number of operations still allowed; negative: never crash.
	left    int
	crashed bool
	// Ops counts the mutating operations performed.
	Ops int
}

// NewCrasher crashes at operation at (0-based); at < 0 never crashes.
func NewCrasher(at int) *Crasher { return &Crasher{left: at} }

func (c *Crasher) step() error {
	if c == nil {
		return nil
	}
	if c.crashed {
		return ErrCrashed
	}
	if c.left == 0 {
		c.crashed = true
		return ErrCrashed
	}
	c.left--
	c.Ops++
	return nil
}

// Crashed reports whether the crash point was reached.
func (c *Crasher) Crashed() bool { return c != nil && c.crashed }

type opKind int

const (
	opCreate opKind = iota
	opAdd           // the new name of a rename
	opRemove        // a removal, or the old name of a rename
)

type pending struct {
	kind opKind
	name string
	data []byte
}

// ESP is a fake espfs.FS.
type ESP struct {
	c       *Crasher
	durable map[string][]byte
	view    map[string][]byte
	dirs    map[string]bool
	pending []pending
}

// NewESP returns an ESP holding files (all durable), crashing per c (nil: never).
func NewESP(files map[string][]byte, c *Crasher) *ESP {
	e := &ESP{c: c, durable: map[string][]byte{}, view: map[string][]byte{}, dirs: map[string]bool{".": true}}
	for n, b := range files {
		e.durable[n] = bytes.Clone(b)
		e.view[n] = bytes.Clone(b)
		e.mkdirs(path.Dir(n))
	}
	return e
}

func (e *ESP) mkdirs(d string) {
	for d != "." && d != "/" && !e.dirs[d] {
		e.dirs[d] = true
		d = path.Dir(d)
	}
}

// Files returns what reads see now (a copy).
func (e *ESP) Files() map[string][]byte {
	out := map[string][]byte{}
	for n, b := range e.view {
		out[n] = bytes.Clone(b)
	}
	return out
}

// AfterCrash returns the ESP as it is after power returns: the durable
// files plus, decided by rng, each pending change or not.
func (e *ESP) AfterCrash(rng *rand.Rand) *ESP {
	files := map[string][]byte{}
	for n, b := range e.durable {
		files[n] = b
	}
	for _, p := range e.pending {
		if rng.Intn(2) == 0 {
			continue
		}
		switch p.kind {
		case opCreate:
			data := p.data
			if rng.Intn(4) == 0 { // torn: the name made it, not all bytes
				data = data[:rng.Intn(len(data)+1)]
			}
			files[p.name] = data
		case opAdd:
			files[p.name] = p.data
		case opRemove:
			delete(files, p.name)
		}
	}
	out := NewESP(files, nil)
	for d := range e.dirs {
		out.dirs[d] = true
	}
	return out
}

// ReadDir implements espfs.FS.
func (e *ESP) ReadDir(dir string) ([]string, error) {
	if !e.dirs[dir] {
		return nil, fmt.Errorf("%s: %w", dir, fs.ErrNotExist)
	}
	var names []string
	for n := range e.view {
		if path.Dir(n) == dir {
			names = append(names, path.Base(n))
		}
	}
	sort.Strings(names)
	return names, nil
}

// ReadFile implements espfs.FS.
func (e *ESP) ReadFile(name string) ([]byte, error) {
	if e.c.Crashed() {
		return nil, ErrCrashed
	}
	b, ok := e.view[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	return bytes.Clone(b), nil
}

// WriteFile implements espfs.FS. A crash during it leaves a pending
// create holding part of the bytes.
func (e *ESP) WriteFile(name string, r io.Reader) (int64, error) {
	if !e.dirs[path.Dir(name)] {
		return 0, fmt.Errorf("%s: %w", path.Dir(name), fs.ErrNotExist)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return int64(len(b)), err
	}
	if err := e.c.step(); err != nil {
		e.pending = append(e.pending, pending{opCreate, name, b[:len(b)/2]})
		return 0, err
	}
	e.view[name] = b
	e.pending = append(e.pending, pending{opCreate, name, b})
	return int64(len(b)), nil
}

// Rename implements espfs.FS in two steps (two crash points): the
// directory change, then the fsync of the renamed file.
func (e *ESP) Rename(oldname, newname string) error {
	b, ok := e.view[oldname]
	if !ok {
		return fmt.Errorf("rename %s: %w", oldname, fs.ErrNotExist)
	}
	if err := e.c.step(); err != nil {
		return err
	}
	delete(e.view, oldname)
	e.view[newname] = b
	e.pending = append(e.pending, pending{opAdd, newname, []byte{}}, pending{opRemove, oldname, nil})
	if err := e.c.step(); err != nil {
		return err
	}
	e.durable[newname] = b // the inode written into the new entry
	for i := range e.pending {
		if e.pending[i].kind == opAdd && e.pending[i].name == newname {
			e.pending[i].data = b
		}
	}
	return nil
}

// Remove implements espfs.FS.
func (e *ESP) Remove(name string) error {
	if err := e.c.step(); err != nil {
		return err
	}
	if _, ok := e.view[name]; !ok {
		return nil
	}
	delete(e.view, name)
	e.pending = append(e.pending, pending{opRemove, name, nil})
	return nil
}

// MkdirAll implements espfs.FS (directories are durable at once).
func (e *ESP) MkdirAll(dir string) error {
	if err := e.c.step(); err != nil {
		return err
	}
	e.mkdirs(dir)
	return nil
}

// SyncDir implements espfs.FS.
func (e *ESP) SyncDir(dir string) error {
	if err := e.c.step(); err != nil {
		return err
	}
	var keep []pending
	for _, p := range e.pending {
		if path.Dir(p.name) != dir {
			keep = append(keep, p)
			continue
		}
		switch p.kind {
		case opCreate, opAdd:
			e.durable[p.name] = p.data
		case opRemove:
			delete(e.durable, p.name)
		}
	}
	e.pending = keep
	return nil
}

// String lists the files, for test failure messages.
func (e *ESP) String() string {
	var names []string
	for n, b := range e.view {
		names = append(names, fmt.Sprintf("%s (%d bytes)", n, len(b)))
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// BlockSize is the fake disk's unit of durability.
const BlockSize = 4096

// Disk is a fake block device (a partition).
type Disk struct {
	c       *Crasher
	durable []byte
	view    []byte
	dirty   map[int64]bool
}

// NewDisk returns a disk holding data (durable), crashing per c.
func NewDisk(data []byte, c *Crasher) *Disk {
	return &Disk{c: c, durable: bytes.Clone(data), view: bytes.Clone(data), dirty: map[int64]bool{}}
}

// Size returns the device size.
func (d *Disk) Size() int64 { return int64(len(d.view)) }

// Bytes returns what reads see now (a copy).
func (d *Disk) Bytes() []byte { return bytes.Clone(d.view) }

// WriteAt writes p at off; the blocks it touches are durable after Sync.
func (d *Disk) WriteAt(p []byte, off int64) (int, error) {
	if err := d.c.step(); err != nil {
		return 0, err
	}
	if off < 0 || off+int64(len(p)) > int64(len(d.view)) {
		return 0, fmt.Errorf("write of %d bytes at %d: beyond the end of the %d-byte device", len(p), off, len(d.view))
	}
	copy(d.view[off:], p)
	for b := off / BlockSize; b*BlockSize < off+int64(len(p)); b++ {
		d.dirty[b] = true
	}
	return len(p), nil
}

// ReadAt reads what was written (durable or not).
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	if d.c.Crashed() {
		return 0, ErrCrashed
	}
	if off >= int64(len(d.view)) {
		return 0, io.EOF
	}
	n := copy(p, d.view[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Sync makes every written block durable.
func (d *Disk) Sync() error {
	if err := d.c.step(); err != nil {
		return err
	}
	for b := range d.dirty {
		end := min((b+1)*BlockSize, int64(len(d.view)))
		copy(d.durable[b*BlockSize:end], d.view[b*BlockSize:end])
	}
	d.dirty = map[int64]bool{}
	return nil
}

// AfterCrash returns the disk after power returns: durable blocks, plus each
// dirty block or not, decided by rng.
func (d *Disk) AfterCrash(rng *rand.Rand) *Disk {
	data := bytes.Clone(d.durable)
	blocks := make([]int64, 0, len(d.dirty))
	for b := range d.dirty {
		blocks = append(blocks, b)
	}
	sort.Slice(blocks, func(i, j int) bool { return blocks[i] < blocks[j] })
	for _, b := range blocks {
		if rng.Intn(2) == 0 {
			end := min((b+1)*BlockSize, int64(len(d.view)))
			copy(data[b*BlockSize:end], d.view[b*BlockSize:end])
		}
	}
	return NewDisk(data, nil)
}
