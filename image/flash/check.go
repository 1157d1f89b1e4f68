package flash

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Reasons a disk is refused; Check wraps them with what to do.
var (
	ErrPartition = errors.New("is a partition, not a whole disk")
	ErrHostDisk  = errors.New("holds the running system")
	ErrInUse     = errors.New("is in use")
	ErrReadOnly  = errors.New("is read-only")
	ErrTooSmall  = errors.New("is smaller than the image")
)

// Check reports every reason d must not be overwritten with an image of
// imageSize bytes, each naming the fix; nil means it may be written.
func Check(d Disk, imageSize int64) error {
	var errs []error
	if d.Partition != "" {
		errs = append(errs, fmt.Errorf("%s %w of %s: flash the whole disk, --device %s",
			d.Path, ErrPartition, d.Partition, strings.TrimSuffix(d.Path, d.Name)+d.Partition))
	}
	if len(d.HostRoot) > 0 {
		errs = append(errs, fmt.Errorf("%s %w (%s): pick another disk, or boot from something else first",
			d.Path, ErrHostDisk, strings.Join(d.HostRoot, "; ")))
	}
	if len(d.InUse) > 0 {
		errs = append(errs, fmt.Errorf("%s %w (%s): unmount its filesystems, swapoff, or stop what holds it, then try again",
			d.Path, ErrInUse, strings.Join(d.InUse, "; ")))
	}
	if d.ReadOnly {
		errs = append(errs, fmt.Errorf("%s %w: release its write-protect switch or lock, then plug it in again", d.Path, ErrReadOnly))
	}
	if d.Size < imageSize {
		errs = append(errs, fmt.Errorf("%s %w: it has %s (%d bytes), the image needs %s (%d bytes): use a larger disk",
			d.Path, ErrTooSmall, HumanSize(d.Size), d.Size, HumanSize(imageSize), imageSize))
	}
	return errors.Join(errs...)
}

// Confirm shows what will be erased and asks the operator to type the disk's
// kernel name (or its path). Anything else, or end of input, cancels. It returns
// whether the operator confirmed.
func Confirm(in io.Reader, out io.Writer, d Disk, image string) (bool, error) {
	fmt.Fprintf(out, "about to write %s to\n  %s\n", image, d.Summary())
	if !d.Candidate() {
		fmt.Fprintf(out, "  note: %s is not a removable or USB disk: make sure it is the disk you mean\n", d.Name)
	}
	fmt.Fprintf(out, "EVERYTHING on %s will be lost. To confirm, type the device name (%s): ", d.Path, d.Name)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("reading the confirmation: %w", err)
	}
	a := strings.TrimSpace(line)
	if a != d.Name && a != d.Path {
		fmt.Fprintf(out, "\ncancelled: that was not %q; nothing was written.\n", d.Name)
		return false, nil
	}
	return true, nil
}
