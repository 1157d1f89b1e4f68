package kmod

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// ErrUsage marks a modprobe command line that could not be parsed.
var ErrUsage = errors.New("usage")

// Modprobe implements the part of modprobe(8) the kernel and operators use:
// "modprobe [-q] [-v] [-n] [-b] [-D] [-a] [--] NAME [PARAM=VALUE…]". The kernel
// runs "modprobe -q -- NAME" for request_module(). dir overrides the module
// directory (empty: /lib/modules/<release>).
func Modprobe(args []string, dir string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("modprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quiet := fs.Bool("q", false, "quiet: no message when a module is not found")
	verbose := fs.Bool("v", false, "print each module inserted")
	dry := fs.Bool("n", false, "dry run: print what would be loaded")
	all := fs.Bool("a", false, "every argument is a module name")
	deps := fs.Bool("D", false, "print the dependency chain and exit")
	_ = fs.Bool("b", false, "apply blacklist (kiln has none)")
	fs.BoolVar(dry, "dry-run", false, "same as -n")
	fs.BoolVar(quiet, "quiet", false, "same as -q")
	fs.BoolVar(deps, "show-depends", false, "same as -D")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%v: %w", err, ErrUsage)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return fmt.Errorf("modprobe: no module name given: %w", ErrUsage)
	}
	names, params := rest[:1], strings.Join(rest[1:], " ")
	if *all {
		names, params = rest, ""
	}
	ins := FinitInsert
	if *dry || *deps || *verbose {
		ins = func(file, p string) error {
			fmt.Fprintf(stdout, "insmod %s %s\n", file, p)
			if *dry || *deps {
				return nil
			}
			return FinitInsert(file, p)
		}
	}
	l, err := NewLoader(Options{Dir: dir, Insert: ins})
	if err != nil {
		return fmt.Errorf("modprobe: %w", err)
	}
	var errs []error
	for _, n := range names {
		err := l.Load(n, params)
		if err != nil && !(*quiet && errors.Is(err, ErrNotFound)) {
			errs = append(errs, fmt.Errorf("modprobe: %w", err))
		} else if err != nil {
			errs = append(errs, ErrNotFound)
		}
	}
	return errors.Join(errs...)
}
