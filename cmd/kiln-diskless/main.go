// Command kiln-diskless is the diskless client initramfs's /init: it mounts
// the root image over NFS with a writable overlay and switches root to its
// /sbin/init (see package init/diskless). Run as /sbin/modprobe (a symlink
// it creates) it answers the kernel's module requests.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"kiln.dev/kiln/init/diskless"
	"kiln.dev/kiln/init/kmod"
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
		return errors.New("kiln-diskless is the diskless initramfs's /init and must run as PID 1")
	}
	diskless.Main(diskless.Options{Out: os.Stdout})
	return errors.New("kiln-diskless: reboot failed")
}
