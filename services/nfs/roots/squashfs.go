package roots

import (
	"fmt"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/services/internal/loopdev"
)

// mountSquashfs attaches file to a free loop device (read-only, freed on
// unmount) and mounts it read-only on dir.
func mountSquashfs(file, dir string) (unmount func() error, err error) {
	dev, err := loopdev.Attach(file, true)
	if err != nil {
		return nil, err
	}
	defer dev.Close() // the mount holds it from here on
	if err := unix.Mount(dev.Path, dir, "squashfs", unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return nil, fmt.Errorf("mounting the squashfs image (is it one? is the squashfs module available?): %w", err)
	}
	return func() error { return unix.Unmount(dir, 0) }, nil
}

// copyTree writes the tree at src below w's root, entry by entry through
// the same path as a tar archive's.
func (w *writer) copyTree(src string) error {
	if err := Walk(src, w.add); err != nil {
		return err
	}
	return w.finish()
}
