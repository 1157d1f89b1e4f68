// Command kiln-stage1 is the initramfs's /init: it finds the root partition,
// mounts it and switches root to /sbin/init (see package init/stage1). Run as
// /sbin/modprobe (a symlink it creates) it answers the kernel's module requests.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"kiln.dev/kiln/init/kmod"
	"kiln.dev/kiln/init/stage1"
)

func main() {
	if err := run(os.Args); err != nil {
		if !errors.Is(err, kmod.ErrNotFound) {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1)
	}
}

func run(args []string) error {
	if filepath.Base(args[0]) == "modprobe" {
		return kmod.Modprobe(args[1:], "", os.Stdout, os.Stderr)
	}
	if os.Getpid() != 1 {
		return errors.New("kiln-stage1 is the initramfs /init and must run as PID 1")
	}
	stage1.Main(stage1.Options{Out: os.Stdout})
	return errors.New("kiln-stage1: reboot failed")
}
