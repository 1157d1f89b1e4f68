// Package coldplug loads the kernel modules the machine's devices need, the job
// udev does elsewhere: once at boot by reading every modalias file under
// /sys/devices, and afterwards for hotplugged devices by listening to the
// kernel's uevents on a NETLINK_KOBJECT_UEVENT socket.
package coldplug

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// AliasLoader loads the modules matching a device's modalias and returns
// those it inserted.
type AliasLoader interface {
	LoadAlias(modalias string) ([]string, error)
}

// Scan returns the distinct modalias strings of the devices under root
// (/sys/devices), sorted.
func Scan(root string) ([]string, error) {
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			return nil // a device vanished or is unreadable: skip it
		}
		if d.Name() != "modalias" || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		if a := strings.TrimSpace(string(b)); a != "" {
			seen[a] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scanning devices: %w", err)
	}
	aliases := make([]string, 0, len(seen))
	for a := range seen {
		aliases = append(aliases, a)
	}
	sort.Strings(aliases)
	return aliases, nil
}

// Once loads modules for every device present under root. Failures (a driver
// for absent or unsupported hardware) are logged and do not stop the pass.
// It returns the modules inserted.
func Once(root string, l AliasLoader, log *slog.Logger) ([]string, error) {
	aliases, err := Scan(root)
	if err != nil {
		return nil, err
	}
	var loaded []string
	for _, a := range aliases {
		mods, err := l.LoadAlias(a)
		loaded = append(loaded, mods...)
		if err != nil {
			log.Warn("loading module for device failed", "modalias", a, "err", err)
		}
	}
	return loaded, nil
}

// Settle repeats Once until a pass inserts nothing, because a loaded bus
// driver (virtio_pci, xhci_pci, ahci) exposes new devices that need modules of
// their own. It makes at most passes passes, pausing between them.
func Settle(ctx context.Context, root string, l AliasLoader, log *slog.Logger, passes int, pause time.Duration) ([]string, error) {
	var all []string
	for i := 0; i < passes; i++ {
		loaded, err := Once(root, l, log)
		if err != nil {
			return all, err
		}
		all = append(all, loaded...)
		if len(loaded) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return all, ctx.Err()
		case <-time.After(pause):
		}
	}
	return all, nil
}

// Uevent is one kernel uevent.
type Uevent struct {
	Action  string
	Devpath string
	Env     map[string]string
}

// ParseUevent decodes a kernel uevent message: "action@devpath\0KEY=VALUE\0…".
// Messages from udev (which start with "libudev") are rejected.
func ParseUevent(b []byte) (Uevent, error) {
	parts := bytes.Split(b, []byte{0})
	head := string(parts[0])
	action, devpath, ok := strings.Cut(head, "@")
	if !ok {
		return Uevent{}, fmt.Errorf("uevent header %q has no '@'", head)
	}
	u := Uevent{Action: action, Devpath: devpath, Env: map[string]string{}}
	for _, p := range parts[1:] {
		if k, v, ok := strings.Cut(string(p), "="); ok {
			u.Env[k] = v
		}
	}
	return u, nil
}

// Listen loads modules for devices the kernel announces until ctx is done.
// Subscribe before calling Once so that no device falls between the two.
// When the kernel drops events (the socket overflowed) it rescans devices.
func Listen(ctx context.Context, sock *Socket, devices string, l AliasLoader, log *slog.Logger) error {
	stop := context.AfterFunc(ctx, func() { sock.Close() })
	defer stop()
	buf := make([]byte, 64<<10)
	for {
		n, err := sock.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, unix.ENOBUFS) { // the kernel dropped events: rescan
				log.Warn("uevent queue overflowed; rescanning devices")
				if _, err := Once(devices, l, log); err != nil {
					log.Warn("rescanning devices", "err", err)
				}
				continue
			}
			return fmt.Errorf("reading uevents: %w", err)
		}
		u, err := ParseUevent(buf[:n])
		if err != nil {
			continue
		}
		a := u.Env["MODALIAS"]
		if u.Action != "add" || a == "" {
			continue
		}
		mods, err := l.LoadAlias(a)
		if err != nil {
			log.Warn("loading module for new device failed", "devpath", u.Devpath, "modalias", a, "err", err)
		} else if len(mods) > 0 {
			log.Info("loaded modules for new device", "devpath", u.Devpath, "modules", mods)
		}
	}
}

// Socket is a NETLINK_KOBJECT_UEVENT socket subscribed to kernel events.
type Socket struct {
	f *os.File
}

// Subscribe opens a uevent socket.
func Subscribe() (*Socket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("opening uevent socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("binding uevent socket: %w", err)
	}
	return &Socket{f: os.NewFile(uintptr(fd), "uevent")}, nil
}

// Read reads one message. The socket is non-blocking and registered with
// Go's poller, so Close wakes a blocked Read.
func (s *Socket) Read(b []byte) (int, error) { return s.f.Read(b) }

// Close closes the socket.
func (s *Socket) Close() error { return s.f.Close() }
