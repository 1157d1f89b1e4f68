package nfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/internal/loopdev"
)

// HomeImage is the file holding home name's file system.
func (l Layout) HomeImage(name string) string {
	return filepath.Join(l.State, "homes", name+".ext4")
}

// HomeDir is where home name is mounted and exported.
func (l Layout) HomeDir(name string) string {
	return filepath.Join(l.Exports, "homes", name)
}

// homeStep is what ensuring one home takes, decided from what is there.
type homeStep struct {
	create, mount, grow bool
	// shrink is refused: ext4 cannot shrink while mounted, and the data
	// would not fit.
	shrink bool
}

// planHome decides the steps for a home of want bytes whose image has
// have bytes (0: missing) and is mounted or not.
func planHome(want, have int64, mounted bool) homeStep {
	s := homeStep{create: have == 0, mount: !mounted}
	if have > 0 && want > have {
		s.grow = true
	}
	if have > want {
		s.shrink = true
	}
	return s
}

// Homes keeps each configured home an ext4 file system of its size limit,
// in an image file on the data partition, loop-mounted at its export
// directory. A file system per home makes the limit hard (a full home
// answers ENOSPC to its clients) and leaves the data partition and other
// homes unharmed.
type Homes struct {
	Layout Layout
	// Mke2fs and Resize2fs are the e2fsprogs programs (in the image).
	Mke2fs, Resize2fs string
}

// Ensure creates, mounts and grows the configured homes and returns the
// names of those ready to export; the error joins what failed for others.
func (h Homes) Ensure(homes []config.NFSHome) ([]string, error) {
	var ready []string
	var errs []error
	for _, hc := range homes {
		if err := h.ensure(hc.Name, hc.Bytes()); err != nil {
			errs = append(errs, fmt.Errorf("home %s: %w", hc.Name, err))
		}
		if _, mounted := loopdev.MountSource(h.Layout.HomeDir(hc.Name)); mounted {
			ready = append(ready, hc.Name)
		}
	}
	return ready, errors.Join(errs...)
}

func (h Homes) ensure(name string, want int64) error {
	img, dir := h.Layout.HomeImage(name), h.Layout.HomeDir(name)
	var have int64
	if fi, err := os.Stat(img); err == nil {
		have = fi.Size()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	dev, mounted := loopdev.MountSource(dir)
	step := planHome(want, have, mounted)
	if step.create {
		if err := h.create(img, want); err != nil {
			return err
		}
	}
	if step.mount {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		var err error
		if dev, err = mountExt4(img, dir); err != nil {
			return err
		}
	}
	if step.shrink {
		return fmt.Errorf("provisioning.nfs.homes size %d bytes is smaller than the home's %d: homes only grow (set the size back; to shrink, copy the data to a new home)", want, have)
	}
	if step.grow {
		if err := os.Truncate(img, want); err != nil {
			return fmt.Errorf("growing the image: %w", err)
		}
		if err := loopdev.Resized(dev); err != nil {
			return fmt.Errorf("telling %s its image grew: %w", dev, err)
		}
		if out, err := exec.Command(h.Resize2fs, dev).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %v: %s", h.Resize2fs, dev, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// create makes a sparse image of size bytes with an empty ext4 on it.
func (h Homes) create(img string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(img), 0o700); err != nil {
		return err
	}
	tmp := img + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("creating the image: %w", err)
	}
	// -m 0: no blocks reserved for root, the limit is the size; lazy
	// initialisation keeps a 50 GiB home's creation quick and sparse.
	out, err := exec.Command(h.Mke2fs, "-q", "-F", "-t", "ext4", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", tmp).CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: %v: %s", h.Mke2fs, err, strings.TrimSpace(string(out)))
	}
	return os.Rename(tmp, img)
}

// mountExt4 loop-mounts img read-write on dir.
func mountExt4(img, dir string) (string, error) {
	dev, err := loopdev.Attach(img, false)
	if err != nil {
		return "", err
	}
	defer dev.Close() // the mount holds it from here on
	if err := unix.Mount(dev.Path, dir, "ext4", unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return "", fmt.Errorf("mounting %s on %s: %w", img, dir, err)
	}
	return dev.Path, nil
}

// tool finds an e2fsprogs program in PATH, else in /sbin.
func tool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return "/sbin/" + name
}
