package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"kiln.dev/kiln/init/kmod"
)

// runModprobe loads kernel modules: "modprobe [-q] [-v] [-n] [-a] [--] NAME
// [PARAM=VALUE…]". The kernel runs "/sbin/modprobe -q -- NAME" (a symlink to
// kiln) for request_module(); a module that is not there exits 1, silently
// with -q.
func runModprobe(_ context.Context, args []string, s stdio) error {
	err := kmod.Modprobe(args, "", s.out, s.err)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kmod.ErrUsage):
		return fmt.Errorf("%v: %w", err, errUsage)
	case errors.Is(err, kmod.ErrNotFound) && err.Error() == kmod.ErrNotFound.Error():
		os.Exit(1) // -q: not found, nothing to say
	}
	return err
}
