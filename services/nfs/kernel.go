package nfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Kernel is the kernel's NFS server as seen through procfs: the nfsd
// filesystem (Dir, normally /proc/fs/nfsd) and the export caches (RPC,
// normally /proc/net/rpc).
type Kernel struct {
	Dir, RPC string
	// Threads is the number of nfsd threads.
	Threads int
	// Lease is the NFSv4 lease and grace time (10 s at least): after a
	// restart of nfsd, clients have that long to reclaim their state.
	Lease time.Duration
	// RecoveryDir keeps the NFSv4 client records across restarts (the
	// kernel's legacy client tracking), so clients may reclaim.
	RecoveryDir string
	// Port is the TCP port (2049).
	Port int
}

// DefaultKernel returns the standard locations and settings.
func DefaultKernel(stateDir string) Kernel {
	return Kernel{Dir: "/proc/fs/nfsd", RPC: "/proc/net/rpc", Threads: 16, Lease: 30 * time.Second,
		RecoveryDir: filepath.Join(stateDir, "v4recovery"), Port: 2049}
}

// Running reports whether nfsd has threads.
func (k Kernel) Running() (bool, error) {
	n, err := k.read("threads")
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(n) != "0", nil
}

// Start brings nfsd up serving NFSv4.1 and 4.2 only on TCP k.Port; it
// mounts the nfsd filesystem first when it is missing (the kernel loads the
// module). A server that already runs is left alone, so a restarted service
// does not cut its clients off or start a grace period.
func (k Kernel) Start() error {
	if _, err := os.Stat(filepath.Join(k.Dir, "versions")); errors.Is(err, os.ErrNotExist) {
		if err := unix.Mount("nfsd", k.Dir, "nfsd", 0, ""); err != nil {
			return fmt.Errorf("mounting the nfsd filesystem on %s (is the nfsd module available?): %w", k.Dir, err)
		}
	}
	if on, err := k.Running(); err != nil || on {
		return err
	}
	have, err := k.read("versions")
	if err != nil {
		return err
	}
	// NFSv2/3 off: they need rpcbind, mountd's RPC service, lockd and statd
	// on more ports; 4.0 off: 4.1 sessions give exactly-once semantics.
	var vers []string
	for _, v := range strings.Fields(have) {
		switch n := strings.TrimLeft(v, "+-"); n {
		case "4.1", "4.2":
			vers = append(vers, "+"+n)
		default:
			vers = append(vers, "-"+n)
		}
	}
	if err := os.MkdirAll(k.RecoveryDir, 0o700); err != nil {
		return fmt.Errorf("creating the NFSv4 recovery directory: %w", err)
	}
	secs := strconv.Itoa(int(max(k.Lease, 10*time.Second) / time.Second))
	for _, w := range []struct{ file, val string }{
		{"versions", strings.Join(vers, " ")},
		{"nfsv4recoverydir", k.RecoveryDir},
		{"nfsv4leasetime", secs},
		{"nfsv4gracetime", secs},
	} {
		if err := k.write(w.file, w.val); err != nil {
			return err
		}
	}
	ports, err := k.read("portlist")
	if err != nil {
		return err
	}
	listener := fmt.Sprintf("tcp %d", k.Port)
	if !strings.Contains(ports, listener) {
		if err := k.write("portlist", listener); err != nil {
			return fmt.Errorf("listening on TCP %d (is another NFS server running?): %w", k.Port, err)
		}
	}
	if err := k.write("threads", strconv.Itoa(max(k.Threads, 1))); err != nil {
		return err
	}
	got, err := k.read("versions")
	if err != nil {
		return err
	}
	if !strings.Contains(got, "+4.2") {
		return fmt.Errorf("nfsd does not serve NFSv4.2 (versions: %s)", strings.TrimSpace(got))
	}
	return nil
}

// Stop ends nfsd's threads; clients see the server gone until it starts again.
func (k Kernel) Stop() error { return k.write("threads", "0") }

// Flush empties the export caches so the kernel asks again.
func (k Kernel) Flush() error {
	now := strconv.FormatInt(time.Now().Unix(), 10)
	for _, c := range caches {
		if err := os.WriteFile(filepath.Join(k.RPC, c, "flush"), []byte(now+"\n"), 0); err != nil {
			return fmt.Errorf("flushing the %s cache: %w", c, err)
		}
	}
	return nil
}

func (k Kernel) read(file string) (string, error) {
	b, err := os.ReadFile(filepath.Join(k.Dir, file))
	if err != nil {
		return "", fmt.Errorf("reading nfsd's %s: %w", file, err)
	}
	return string(b), nil
}

func (k Kernel) write(file, val string) error {
	if err := os.WriteFile(filepath.Join(k.Dir, file), []byte(val+"\n"), 0); err != nil {
		return fmt.Errorf("setting nfsd's %s to %q: %w", file, val, err)
	}
	return nil
}

// Channels are the export caches' upcall channels, open. Open them before
// the first apply: the kernel queues an upcall only for readers already open,
// and the apply's flush drops whatever a previous process left pending.
type Channels struct {
	files []*os.File
}

// OpenChannels opens the upcall channels of every cache kiln answers.
func (k Kernel) OpenChannels() (*Channels, error) {
	c := &Channels{}
	for _, name := range caches {
		f, err := os.OpenFile(filepath.Join(k.RPC, name, "channel"), os.O_RDWR, 0)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("opening the %s upcall channel: %w", name, err)
		}
		c.files = append(c.files, f)
	}
	return c, nil
}

// Close closes the channels.
func (c *Channels) Close() error {
	for _, f := range c.files {
		f.Close()
	}
	return nil
}

// Serve answers the upcalls from a until ctx ends: the job Debian's
// rpc.mountd does, without its RPC service (NFSv4 needs none).
func (c *Channels) Serve(ctx context.Context, a *Answerer, log *slog.Logger) error {
	fds := make([]unix.PollFd, 0, len(c.files))
	for _, f := range c.files {
		fds = append(fds, unix.PollFd{Fd: int32(f.Fd()), Events: unix.POLLIN})
	}
	buf := make([]byte, 32<<10)
	for ctx.Err() == nil {
		for i := range fds {
			fds[i].Revents = 0
		}
		n, err := unix.Poll(fds, 500)
		if errors.Is(err, syscall.EINTR) || n == 0 {
			continue
		}
		if err != nil {
			return fmt.Errorf("waiting for export cache upcalls: %w", err)
		}
		for i, fd := range fds {
			if fd.Revents == 0 {
				continue
			}
			m, err := unix.Read(int(fd.Fd), buf)
			if err != nil || m == 0 {
				continue // nothing queued after all
			}
			req := string(buf[:m])
			reply, err := a.Answer(caches[i], req)
			if err != nil {
				log.Warn("ignoring a malformed upcall", "err", err)
				continue
			}
			if _, err := unix.Write(int(fd.Fd), []byte(reply)); err != nil {
				log.Warn("the kernel refused an upcall reply", "cache", caches[i], "reply", strings.TrimSpace(reply), "err", err)
				continue
			}
			log.Debug("upcall", "cache", caches[i], "request", strings.TrimSpace(req), "reply", strings.TrimSpace(reply))
		}
	}
	return nil
}
