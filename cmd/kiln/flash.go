package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"kiln.dev/kiln/image/flash"
)

const flashUsage = `usage: kiln flash --device /dev/sdX [--yes] IMAGE   write a raw image or hybrid ISO to a whole disk
       kiln flash --list [--all]                     list candidate disks (--all: every disk)`

// runFlash writes an image to a disk (image/flash does the work).
func runFlash(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("flash", flag.ContinueOnError)
	fs.SetOutput(s.err)
	fs.Usage = func() { fmt.Fprintln(s.err, flashUsage); fs.PrintDefaults() }
	device := fs.String("device", "", "the whole disk to overwrite: /dev/sdX, /dev/disk/by-id/…, or a kernel name")
	yes := fs.Bool("yes", false, "do not ask for the device name to be typed (scripts)")
	list := fs.Bool("list", false, "list candidate disks and exit")
	all := fs.Bool("all", false, "with --list: every disk, not only removable and USB ones")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("flash: %w", errUsage)
	}
	host := flash.Host()
	if *list || (*device == "" && fs.NArg() <= 1) {
		disks, err := host.Disks()
		if err != nil {
			return fmt.Errorf("flash: %w", err)
		}
		n := 0
		for _, d := range disks {
			if !*all && !d.Candidate() {
				continue
			}
			n++
			line := d.Summary()
			if why := append(d.HostRoot, d.InUse...); len(why) > 0 {
				line += "  [refused: " + strings.Join(why, "; ") + "]"
			}
			fmt.Fprintln(s.out, line)
		}
		if n == 0 {
			fmt.Fprintln(s.out, "no removable or USB disks found (plug one in, or see kiln flash --list --all)")
		}
		if *list {
			return nil
		}
		return fmt.Errorf("flash: choose the disk with --device: %w", errUsage)
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(s.err, flashUsage)
		return fmt.Errorf("flash: want one IMAGE argument, got %d: %w", fs.NArg(), errUsage)
	}
	if *device == "" {
		return fmt.Errorf("flash: --device is required (kiln flash --list shows candidates): %w", errUsage)
	}
	tty := false
	if f, ok := s.out.(*os.File); ok {
		tty = terminal(f)
	}
	_, err := host.Flash(ctx, flash.Request{
		Image: fs.Arg(0), Device: *device, Yes: *yes, In: s.in, Out: s.out, Terminal: tty,
	})
	if err != nil {
		return fmt.Errorf("flash: %w", err)
	}
	return nil
}
