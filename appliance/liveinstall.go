package appliance

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"kiln.dev/kiln/image/flash"
	"kiln.dev/kiln/image/liveinstall"
	"kiln.dev/kiln/init/blockdev"
	"kiln.dev/kiln/init/console"
	"kiln.dev/kiln/init/stage1"
)

// liveInstaller is the recovery menu's "install to disk" on a live system:
// it finds the live medium by its ID, as stage 1 did, and writes the raw
// image the medium's install map describes (image/liveinstall) to a disk
// that image/flash's checks allow.
type liveInstaller struct {
	liveID string
	sys    flash.System
}

// medium opens the live medium and reads its install map.
func (l liveInstaller) medium() (*os.File, liveinstall.Map, map[string]io.ReaderAt, error) {
	lm, err := stage1.FindLive(blockdev.Default, l.liveID)
	if err != nil {
		return nil, liveinstall.Map{}, nil, fmt.Errorf("finding the live medium: %w", err)
	}
	f, err := os.Open(lm.Device)
	if err != nil {
		return nil, liveinstall.Map{}, nil, fmt.Errorf("opening the live medium: %w", err)
	}
	m, src, err := liveinstall.Medium(f)
	if err != nil {
		f.Close()
		return nil, liveinstall.Map{}, nil, fmt.Errorf("%s: %w", lm.Device, err)
	}
	return f, m, src, nil
}

func (l liveInstaller) Targets(context.Context) ([]console.InstallTarget, error) {
	f, m, _, err := l.medium()
	if err != nil {
		return nil, err
	}
	f.Close()
	disks, err := l.sys.Disks()
	if err != nil {
		return nil, err
	}
	var out []console.InstallTarget
	for _, d := range disks {
		t := console.InstallTarget{Name: d.Name, Summary: d.Summary()}
		if err := flash.Check(d, m.Size); err != nil {
			t.Refused = strings.ReplaceAll(err.Error(), "\n", "; ")
		}
		out = append(out, t)
	}
	return out, nil
}

func (l liveInstaller) Install(ctx context.Context, name string, out io.Writer) error {
	f, m, src, err := l.medium()
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := l.sys.Lookup(name)
	if err != nil {
		return err
	}
	if err := flash.Check(d, m.Size); err != nil {
		return fmt.Errorf("refusing to write %s: %w", d.Path, err)
	}
	dev, err := flash.Open(d.Path)
	if err != nil {
		return err
	}
	defer dev.Close()
	devSize, err := dev.Size()
	if err != nil {
		return err
	}
	if devSize < m.Size {
		return fmt.Errorf("%s %w: it has %d bytes, the image %d", d.Path, flash.ErrTooSmall, devSize, m.Size)
	}
	bar := &flash.Bar{W: out} // the console may be a serial line: a line every 10%
	res, err := liveinstall.Install(ctx, dev, m, src, liveinstall.Options{DevSize: devSize, Report: bar.Update})
	if err != nil {
		return err
	}
	if err := dev.RereadPartitions(); err != nil {
		fmt.Fprintf(out, "note: %v\n", err)
	}
	fmt.Fprintf(out, "wrote %s to %s in %s, verified in %s: sha256 %s (as out/kiln.img)\n",
		flash.HumanSize(res.Bytes), d.Path, res.Write.Round(100*time.Millisecond), res.Verify.Round(100*time.Millisecond), res.SHA256)
	return nil
}
