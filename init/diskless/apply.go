package diskless

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Mounter is what Apply needs of the system.
type Mounter interface {
	Mkdir(path string) error
	Mount(m Mount) error
}

// System is the real Mounter.
type System struct{}

// Mkdir creates path and its parents.
func (System) Mkdir(path string) error { return os.MkdirAll(path, 0o755) }

// Mount calls mount(2).
func (System) Mount(m Mount) error {
	return unix.Mount(m.Source, m.Target, m.FSType, m.Flags, m.Data)
}

// Apply runs the steps in order. An NFS mount that fails is retried every
// retry until ctx ends (the server may be restarting, or the operator
// assigning this machine its root image); report is told of each failed
// attempt. The returned error names the step and says what to check.
func Apply(ctx context.Context, steps []Step, sys Mounter, retry time.Duration, report func(error)) error {
	for _, s := range steps {
		if s.Mkdir != "" {
			if err := sys.Mkdir(s.Mkdir); err != nil {
				return fmt.Errorf("creating %s: %w", s.Mkdir, err)
			}
			continue
		}
		m := *s.Mount
		for {
			err := sys.Mount(m)
			if err == nil {
				break
			}
			err = explain(m, err)
			if m.FSType != "nfs4" {
				return err
			}
			report(err)
			select {
			case <-ctx.Done():
				return err
			case <-time.After(retry):
			}
		}
	}
	return nil
}

// explain turns a mount error into the console message.
func explain(m Mount, err error) error {
	switch {
	case m.FSType != "nfs4":
		return fmt.Errorf("mounting %v: %w", m, err)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("NFS server refused %s: %w (the appliance exports a root image or home only to hosts of the machine database that use it, from an address in a provisioning subnet: check this host's root image, home and reservation)", m.Source, err)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("NFS server has no export %s: %w (is the root image promoted and the nfs service enabled?)", m.Source, err)
	case errors.Is(err, unix.ECONNREFUSED), errors.Is(err, unix.ETIMEDOUT), errors.Is(err, unix.EHOSTUNREACH), errors.Is(err, unix.ENETUNREACH):
		return fmt.Errorf("NFS server for %s unreachable: %w (is the appliance's nfs service running?)", m.Source, err)
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("mounting %s: %w (the kernel has no nfs4 file system: the nfsv4 module is missing from the initramfs)", m.Source, err)
	default:
		return fmt.Errorf("mounting %s over NFS: %w", m.Source, err)
	}
}
