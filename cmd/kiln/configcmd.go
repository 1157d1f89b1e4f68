package main

import (
	"context"
	"flag"
	"fmt"

	"kiln.dev/kiln/appliance"
	"kiln.dev/kiln/services/config"
)

// runConfig checks a config file: "kiln config validate --config F" (F may be -
// for standard input). Every problem is printed with its field and fix.
func runConfig(_ context.Context, args []string, s stdio) error {
	if len(args) == 0 || args[0] != "validate" {
		fmt.Fprintln(s.err, "usage: kiln config validate --config FILE|-")
		return fmt.Errorf("config: want validate: %w", errUsage)
	}
	fs := flag.NewFlagSet("config validate", flag.ContinueOnError)
	fs.SetOutput(s.err)
	path := fs.String("config", "", "the config file to check (- for standard input)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("config validate: %v: %w", err, errUsage)
	}
	if *path == "" || fs.NArg() != 0 {
		return fmt.Errorf("config validate: want --config FILE: %w", errUsage)
	}
	var cfg config.Config
	var err error
	if *path == "-" {
		cfg, err = config.Parse(s.in)
	} else {
		cfg, err = config.Load(*path)
	}
	if err == nil {
		err = appliance.CheckServiceNames(cfg)
	}
	if err != nil {
		return fmt.Errorf("config validate: %w", err)
	}
	fmt.Fprintf(s.out, "%s: ok\n", *path)
	return nil
}
