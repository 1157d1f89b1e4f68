package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"kiln.dev/kiln/services/ntp"
)

// runNTP is "kiln ntp query [--timeout D] SERVER...": asks NTP servers (kiln
// itself from its recovery shell: 127.0.0.1) once each, without touching the
// clock, like `chronyd -Q` or `ntpdate -q`. It fails when any server gave no
// usable time.
func runNTP(ctx context.Context, args []string, s stdio) error {
	if len(args) == 0 || args[0] != "query" {
		return fmt.Errorf("ntp: want query SERVER... (e.g. kiln ntp query 127.0.0.1): %w", errUsage)
	}
	fs := flag.NewFlagSet("ntp query", flag.ContinueOnError)
	fs.SetOutput(s.err)
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for each server")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("ntp query: %v: %w", err, errUsage)
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("ntp query: name at least one server: %w", errUsage)
	}
	failed := 0
	for _, srv := range fs.Args() {
		qctx, cancel := context.WithTimeout(ctx, *timeout)
		sm, err := ntp.Query(qctx, srv)
		cancel()
		switch {
		case errors.Is(err, ntp.ErrUnsynchronized):
			failed++
			fmt.Fprintf(s.out, "%v: clients will not use it\n", err)
		case err != nil:
			failed++
			fmt.Fprintf(s.out, "%v\n", err)
		default:
			fmt.Fprintf(s.out, "NTP server %s: stratum %d, offset %+.6fs, delay %.6fs, root distance %.6fs\n",
				sm.Server, sm.Stratum, sm.Offset.Seconds(), sm.Delay.Seconds(), sm.RootDistance().Seconds())
		}
	}
	if failed > 0 {
		return fmt.Errorf("ntp query: %d of %d servers gave no usable time", failed, fs.NArg())
	}
	return nil
}
