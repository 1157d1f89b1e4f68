// Package dm talks to the kernel's device-mapper through its ioctl interface
// (/dev/mapper/control, linux/dm-ioctl.h version 4), so stage 1 can set up
// the verity target of the root without dmsetup or veritysetup in the
// initramfs. It encodes the requests libdevmapper sends: create a device,
// load a read-only table, resume it; read a table or status back; remove.
package dm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ControlPath is the device-mapper control node devtmpfs creates when dm-mod loads.
const ControlPath = "/dev/mapper/control"

// Layout of struct dm_ioctl and struct dm_target_spec (linux/dm-ioctl.h).
const (
	headerSize     = 312 // sizeof(struct dm_ioctl)
	targetSpecSize = 40  // sizeof(struct dm_target_spec)
	nameLen        = 128
	uuidLen        = 129
	targetTypeLen  = 16

	offDataSize    = 12
	offDataStart   = 16
	offTargetCount = 20
	offFlags       = 28
	offDev         = 40
	offName        = 48
	offUUID        = offName + nameLen
)

// Interface version sent; the kernel accepts any request with major 4 and a
// minor it knows.
var version = [3]uint32{4, 0, 0}

// Commands (DM_*_CMD) and flags used here.
const (
	cmdDevCreate   = 3
	cmdDevRemove   = 4
	cmdDevSuspend  = 6 // without the suspend flag: resume (activate the loaded table)
	cmdTableLoad   = 9
	cmdTableStatus = 12

	flagReadOnly   = 1 << 0
	flagStatusTbl  = 1 << 4 // DM_STATUS_TABLE_FLAG: return the table, not the status
	flagBufferFull = 1 << 8
)

// ioctlNumber is _IOWR(DM_IOCTL=0xfd, cmd, struct dm_ioctl).
func ioctlNumber(cmd uint) uint {
	return 3<<30 | headerSize<<16 | 0xfd<<8 | cmd
}

// Target is one line of a device-mapper table: Length sectors (512 bytes)
// from Start handled by target Type with Params.
type Target struct {
	Start, Length uint64
	Type          string
	Params        string
}

// String renders the target as dmsetup table shows it.
func (t Target) String() string {
	return fmt.Sprintf("%d %d %s %s", t.Start, t.Length, t.Type, t.Params)
}

// request is one dm_ioctl with its data area.
type request struct {
	name, uuid string
	flags      uint32
	targets    []Target
	dataSize   uint32 // buffer size; at least what targets need
}

// ErrInput marks a name, UUID or target the kernel would refuse.
var ErrInput = errors.New("invalid device-mapper request")

// encode returns the ioctl buffer libdevmapper would send for r.
func (r request) encode() ([]byte, error) {
	if r.name == "" || len(r.name) >= nameLen || strings.ContainsAny(r.name, "/\x00") {
		return nil, fmt.Errorf("device name %q: %w (1-%d bytes, no '/')", r.name, ErrInput, nameLen-1)
	}
	if len(r.uuid) >= uuidLen || strings.Contains(r.uuid, "\x00") {
		return nil, fmt.Errorf("device uuid %q: %w (at most %d bytes)", r.uuid, ErrInput, uuidLen-1)
	}
	var data bytes.Buffer
	for i, t := range r.targets {
		if t.Type == "" || len(t.Type) >= targetTypeLen || strings.Contains(t.Params, "\x00") {
			return nil, fmt.Errorf("target %d (%q): %w", i, t.Type, ErrInput)
		}
		size := align8(targetSpecSize + len(t.Params) + 1)
		spec := make([]byte, size)
		binary.LittleEndian.PutUint64(spec[0:], t.Start)
		binary.LittleEndian.PutUint64(spec[8:], t.Length)
		binary.LittleEndian.PutUint32(spec[20:], uint32(size)) // next: offset of the following spec from this one
		copy(spec[24:24+targetTypeLen], t.Type)
		copy(spec[targetSpecSize:], t.Params)
		data.Write(spec)
	}
	total := max(uint32(headerSize+data.Len()), r.dataSize)
	b := make([]byte, total)
	for i, v := range version {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	binary.LittleEndian.PutUint32(b[offDataSize:], total)
	binary.LittleEndian.PutUint32(b[offDataStart:], headerSize)
	binary.LittleEndian.PutUint32(b[offTargetCount:], uint32(len(r.targets)))
	binary.LittleEndian.PutUint32(b[offFlags:], r.flags)
	copy(b[offName:offName+nameLen], r.name)
	copy(b[offUUID:offUUID+uuidLen], r.uuid)
	copy(b[headerSize:], data.Bytes())
	return b, nil
}

func align8(n int) int { return (n + 7) &^ 7 }

// reply is what the kernel wrote back into the buffer.
type reply struct {
	flags   uint32
	dev     uint64
	targets []Target
}

// decode reads a reply: the header fields and, for status requests, the
// targets with the strings the kernel filled in.
func decode(b []byte) (reply, error) {
	if len(b) < headerSize {
		return reply{}, fmt.Errorf("device-mapper reply of %d bytes is shorter than its header", len(b))
	}
	r := reply{
		flags: binary.LittleEndian.Uint32(b[offFlags:]),
		dev:   binary.LittleEndian.Uint64(b[offDev:]),
	}
	count := binary.LittleEndian.Uint32(b[offTargetCount:])
	start := int(binary.LittleEndian.Uint32(b[offDataStart:]))
	size := int(binary.LittleEndian.Uint32(b[offDataSize:]))
	if count == 0 || size <= start { // no data: the kernel shrinks data_size to its minimum
		return r, nil
	}
	if size > len(b) {
		return reply{}, fmt.Errorf("device-mapper reply: data %d..%d outside the %d-byte buffer", start, size, len(b))
	}
	data := b[start:size]
	off := 0
	for i := uint32(0); i < count; i++ {
		if off+targetSpecSize > len(data) {
			return reply{}, fmt.Errorf("device-mapper reply: target %d past the data", i)
		}
		spec := data[off:]
		t := Target{
			Start:  binary.LittleEndian.Uint64(spec[0:]),
			Length: binary.LittleEndian.Uint64(spec[8:]),
			Type:   cstring(spec[24 : 24+targetTypeLen]),
			Params: cstring(spec[targetSpecSize:]),
		}
		r.targets = append(r.targets, t)
		// In replies, next is the following spec's offset from the data start.
		next := int(binary.LittleEndian.Uint32(spec[20:]))
		if next <= off {
			break
		}
		off = next
	}
	return r, nil
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// Control is an open device-mapper control node.
type Control struct {
	f *os.File
}

// Open opens the control node at path (ControlPath on a live system).
func Open(path string) (*Control, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening device-mapper control %s: %w (is dm-mod loaded?)", path, err)
	}
	return &Control{f: f}, nil
}

// Close closes the control node.
func (c *Control) Close() error { return c.f.Close() }

func (c *Control) do(cmd uint, r request) (reply, error) {
	b, err := r.encode()
	if err != nil {
		return reply{}, err
	}
	conn, err := c.f.SyscallConn()
	if err != nil {
		return reply{}, err
	}
	var errno error
	if err := conn.Control(func(fd uintptr) {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(ioctlNumber(cmd)), uintptr(unsafe.Pointer(&b[0])))
		if e != 0 {
			errno = e
		}
	}); err != nil {
		return reply{}, err
	}
	if errno != nil {
		return reply{}, errno
	}
	return decode(b)
}

// Device is an active mapped device.
type Device struct {
	Name         string
	Major, Minor uint32
}

// Node returns the device's node name under /dev as devtmpfs names it ("dm-0").
func (d Device) Node() string { return fmt.Sprintf("dm-%d", d.Minor) }

// CreateReadOnly creates device name (with uuid, which may be empty), loads
// targets as a read-only table and activates it. On failure nothing is left
// behind.
func (c *Control) CreateReadOnly(name, uuid string, targets []Target) (Device, error) {
	if len(targets) == 0 {
		return Device{}, fmt.Errorf("device %s: %w: no targets", name, ErrInput)
	}
	if _, err := (request{name: name, uuid: uuid, targets: targets}).encode(); err != nil {
		return Device{}, err
	}
	rep, err := c.do(cmdDevCreate, request{name: name, uuid: uuid})
	if err != nil {
		return Device{}, fmt.Errorf("creating device-mapper device %s: %w", name, err)
	}
	if _, err := c.do(cmdTableLoad, request{name: name, flags: flagReadOnly, targets: targets}); err != nil {
		c.Remove(name)
		return Device{}, fmt.Errorf("loading table of %s (%s): %w (the kernel log says why)", name, targets[0], err)
	}
	if rep, err = c.do(cmdDevSuspend, request{name: name}); err != nil {
		c.Remove(name)
		return Device{}, fmt.Errorf("activating %s: %w", name, err)
	}
	return Device{Name: name, Major: unix.Major(rep.dev), Minor: unix.Minor(rep.dev)}, nil
}

// Remove removes device name.
func (c *Control) Remove(name string) error {
	if _, err := c.do(cmdDevRemove, request{name: name}); err != nil {
		return fmt.Errorf("removing device-mapper device %s: %w", name, err)
	}
	return nil
}

// Table returns the active table of device name, as dmsetup table prints it.
func (c *Control) Table(name string) ([]Target, error) { return c.status(name, flagStatusTbl) }

// Status returns the status of each target of device name, as dmsetup
// status prints it (for verity: "V" verified so far, "C" corruption seen).
func (c *Control) Status(name string) ([]Target, error) { return c.status(name, 0) }

func (c *Control) status(name string, flags uint32) ([]Target, error) {
	for size := uint32(16 << 10); size <= 1<<20; size *= 4 {
		rep, err := c.do(cmdTableStatus, request{name: name, flags: flags, dataSize: size})
		if err != nil {
			return nil, fmt.Errorf("reading the table of %s: %w", name, err)
		}
		if rep.flags&flagBufferFull == 0 {
			return rep.targets, nil
		}
	}
	return nil, fmt.Errorf("reading the table of %s: longer than 1 MiB", name)
}
