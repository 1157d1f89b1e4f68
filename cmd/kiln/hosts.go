package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"kiln.dev/kiln/internal/atomicfile"
	"kiln.dev/kiln/services/store"
)

// runHosts imports and exports the machine database's hosts:
//
//	kiln hosts import [--state DIR] [--format yaml|csv] [--replace] FILE|-
//	kiln hosts export [--state DIR] [--format yaml|csv] [FILE|-]
//
// list, get, add and rm (and import/export without --state when logged in)
// go through the appliance's API instead: see runHostsAPI.
func runHosts(ctx context.Context, args []string, s stdio) error {
	if hostsViaAPI(args) {
		return runHostsAPI(ctx, args, s)
	}
	if len(args) == 0 || (args[0] != "import" && args[0] != "export") {
		fmt.Fprintln(s.err, hostsAPIUsage+"\n       kiln hosts import [--state DIR] [--format yaml|csv] [--replace] FILE|-\n       kiln hosts export [--state DIR] [--format yaml|csv] [FILE|-]")
		return fmt.Errorf("hosts: want list, get, add, rm, import or export: %w", errUsage)
	}
	verb := args[0]
	fs := flag.NewFlagSet("hosts "+verb, flag.ContinueOnError)
	fs.SetOutput(s.err)
	state := fs.String("state", "/data/state", "state directory holding kiln.db (kiln serve: its --state)")
	format := fs.String("format", "", "yaml or csv (default: from the file name; yaml for -)")
	replace := false
	if verb == "import" {
		fs.BoolVar(&replace, "replace", false, "update hosts that already exist (by name) instead of refusing")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("hosts %s: %v: %w", verb, err, errUsage)
	}
	file := "-"
	switch {
	case fs.NArg() == 1:
		file = fs.Arg(0)
	case fs.NArg() > 1 || (verb == "import" && fs.NArg() == 0):
		return fmt.Errorf("hosts %s: want one file name (or - for standard %s): %w", verb, map[string]string{"import": "input", "export": "output"}[verb], errUsage)
	}
	f := store.Format(*format)
	switch {
	case f == "" && file == "-":
		f = store.FormatYAML
	case f == "":
		var err error
		if f, err = store.FormatOf(file); err != nil {
			return fmt.Errorf("hosts %s: %w", verb, err)
		}
	case f != store.FormatYAML && f != store.FormatCSV:
		return fmt.Errorf("hosts %s: --format %q: use yaml or csv: %w", verb, f, errUsage)
	}
	if _, err := os.Stat(*state); err != nil {
		return fmt.Errorf("hosts %s: state directory: %w (pass --state, the directory kiln serve keeps kiln.db in)", verb, err)
	}
	db, err := store.Open(ctx, store.Path(*state))
	if err != nil {
		return fmt.Errorf("hosts %s: %w", verb, err)
	}
	defer db.Close()

	if verb == "export" {
		return exportHosts(ctx, db, file, f, s.out)
	}
	var r io.Reader = s.in
	if file != "-" {
		fh, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("hosts import: %w", err)
		}
		defer fh.Close()
		r = fh
	}
	res, err := db.ImportHosts(ctx, r, f, replace)
	if err != nil {
		var es store.Errors
		if errors.As(err, &es) {
			return fmt.Errorf("hosts import: %s: nothing was imported, fix these and run again:\n%w", file, err)
		}
		return fmt.Errorf("hosts import: %s: %w", file, err)
	}
	fmt.Fprintf(s.out, "imported %s: %d created, %d updated\n", file, res.Created, res.Updated)
	return nil
}

// exportHosts writes the hosts to file ("-": w), replacing file atomically.
func exportHosts(ctx context.Context, db *store.Store, file string, f store.Format, w io.Writer) error {
	if file == "-" {
		return db.ExportHosts(ctx, w, f)
	}
	err := atomicfile.Write(file, 0o600, func(out *os.File) error { return db.ExportHosts(ctx, out, f) })
	if err != nil {
		return fmt.Errorf("hosts export: %w", err)
	}
	return nil
}
