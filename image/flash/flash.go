package flash

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Request is one flash job.
type Request struct {
	Image    string    // raw disk image (kiln.img) or hybrid ISO
	Device   string    // target disk: /dev/sdX, a /dev/disk/by-id link, or a kernel name
	Yes      bool      // skip the typed confirmation
	In       io.Reader // the confirmation is read from here
	Out      io.Writer // prompt, progress and summary
	Terminal bool      // Out is a terminal: redraw one progress line
	Now      func() time.Time
}

// ErrCancelled marks a flash the operator did not confirm.
var ErrCancelled = errors.New("not confirmed")

// ErrImage marks a file that is not a raw disk image.
var ErrImage = errors.New("not a raw disk image")

// Flash checks the device, asks for the typed confirmation unless r.Yes, writes
// the image with progress, verifies it and has the kernel re-read the partitions.
func (s System) Flash(ctx context.Context, r Request) (Result, error) {
	img, err := os.Open(r.Image)
	if err != nil {
		return Result{}, fmt.Errorf("opening the image: %w", err)
	}
	defer img.Close()
	size, err := CheckImage(img)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", r.Image, err)
	}
	d, err := s.Lookup(r.Device)
	if err != nil {
		return Result{}, err
	}
	if err := Check(d, size); err != nil {
		return Result{}, fmt.Errorf("refusing to write %s:\n%w", d.Path, err)
	}
	if !r.Yes {
		ok, err := Confirm(r.In, r.Out, d, r.Image)
		if err != nil {
			return Result{}, err
		}
		if !ok {
			return Result{}, fmt.Errorf("%s: %w", d.Path, ErrCancelled)
		}
	}
	dev, err := Open(d.Path)
	if err != nil {
		return Result{}, err
	}
	defer dev.Close()
	devSize, err := dev.Size()
	if err != nil {
		return Result{}, err
	}
	if devSize < size { // sysfs said otherwise: trust the device
		return Result{}, fmt.Errorf("%s %w: it has %d bytes, the image %d", d.Path, ErrTooSmall, devSize, size)
	}
	bar := &Bar{W: r.Out, Terminal: r.Terminal}
	res, err := Write(ctx, dev, img, size, Options{DevSize: devSize, Now: r.Now, Report: bar.Update})
	if err != nil {
		return res, err
	}
	if err := dev.RereadPartitions(); err != nil {
		fmt.Fprintf(r.Out, "note: %v (unplug and replug the disk to see its partitions)\n", err)
	}
	fmt.Fprintf(r.Out, "wrote %s to %s in %s (%s/s), verified in %s: sha256 %s\n",
		HumanSize(res.Bytes), d.Path, res.Write.Round(100*time.Millisecond), HumanSize(rate(res.Bytes, res.Write)),
		res.Verify.Round(100*time.Millisecond), res.SHA256)
	return res, nil
}

func rate(n int64, d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(float64(n) / d.Seconds())
}

// CheckImage returns the size of a raw image, refusing files that are not one: a
// qcow2 or other virtual disk format, or a file without a partition table.
func CheckImage(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("%w: it is not a regular file", ErrImage)
	}
	head := make([]byte, 1024)
	if _, err := f.ReadAt(head, 0); err != nil {
		return 0, fmt.Errorf("%w: %d bytes is too short", ErrImage, st.Size())
	}
	switch {
	case string(head[:4]) == "QFI\xfb":
		return 0, fmt.Errorf("%w: it is qcow2: flash the raw image (out/kiln.img)", ErrImage)
	case string(head[:4]) == "KDMV" || string(head[:8]) == "vhdxfile" || string(head[:8]) == "conectix":
		return 0, fmt.Errorf("%w: it is a VM disk (VMDK/VHDX/VHD): flash the raw image (out/kiln.img)", ErrImage)
	case head[510] != 0x55 || head[511] != 0xaa:
		return 0, fmt.Errorf("%w: it has no boot sector / partition table (kiln images are GPT with a protective MBR)", ErrImage)
	}
	return st.Size(), nil
}
