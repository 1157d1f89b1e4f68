package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"kiln.dev/kiln/services/netconf"
)

// runNet talks to the running netconf service:
//
//	kiln net status [--run DIR] [--json]
//	kiln net apply --try FILE [--timeout 60s] [--run DIR]
//	kiln net confirm [--run DIR]
//
// A new network or firewall config always runs in try mode: it reverts after
// the timeout unless confirmed, so a mistake cannot lock the operator out.
func runNet(ctx context.Context, args []string, s stdio) error {
	if len(args) == 0 {
		return fmt.Errorf("net: name a subcommand: status, apply --try FILE, confirm: %w", errUsage)
	}
	sub := args[0]
	fs := flag.NewFlagSet("net "+sub, flag.ContinueOnError)
	fs.SetOutput(s.err)
	runDir := fs.String("run", "/run/kiln", "the runtime directory (kiln serve: <state>/run)")
	asJSON := fs.Bool("json", false, "print JSON (status)")
	try := fs.String("try", "", "config file whose network and firewall sections to try (apply)")
	timeout := fs.Duration("timeout", netconf.DefaultTryTimeout, "revert a tried config after this long unless confirmed (apply)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("net %s: %v: %w", sub, err, errUsage)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("net %s: unexpected argument %q: %w", sub, fs.Arg(0), errUsage)
	}
	cl := netconf.NewClient(filepath.Join(*runDir, netconf.SocketName))
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	switch sub {
	case "status":
		st, err := cl.Status(ctx)
		if err != nil {
			return fmt.Errorf("net status: %w", err)
		}
		if *asJSON {
			enc := json.NewEncoder(s.out)
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		}
		return printNetStatus(s.out, st)
	case "apply":
		if *try == "" {
			return fmt.Errorf("net apply: --try FILE is required: a new network config runs in try mode and reverts unless confirmed with kiln net confirm: %w", errUsage)
		}
		b, err := os.ReadFile(*try)
		if err != nil {
			return fmt.Errorf("net apply: %w", err)
		}
		res, err := cl.Try(ctx, b, *timeout)
		if err != nil {
			return fmt.Errorf("net apply: %w", err)
		}
		if len(res.Plan) == 0 {
			fmt.Fprintln(s.out, "links: nothing to change")
		}
		for _, st := range res.Plan {
			fmt.Fprintln(s.out, "  "+st)
		}
		if res.FirewallChanged {
			fmt.Fprintln(s.out, "firewall: ruleset replaced")
		}
		fmt.Fprintf(s.out, "trying until %s: run \"kiln net confirm\" to keep it, or it reverts\n", res.Deadline.Local().Format(time.TimeOnly))
		return nil
	case "confirm":
		if err := cl.Confirm(ctx); err != nil {
			return fmt.Errorf("net confirm: %w", err)
		}
		fmt.Fprintln(s.out, "confirmed")
		return nil
	}
	return fmt.Errorf("net: unknown subcommand %q (status, apply --try FILE, confirm): %w", sub, errUsage)
}

func printNetStatus(w io.Writer, st netconf.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LINK\tROLE\tSTATE\tCARRIER\tSPEED\tMTU\tADDRESSES")
	for _, l := range st.Links {
		speed := "-"
		if l.SpeedMbps >= 0 {
			speed = fmt.Sprintf("%dMb/s", l.SpeedMbps)
		}
		carrier := "no"
		if l.Carrier {
			carrier = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", l.Name, l.Role, l.State, carrier, speed, l.MTU, strings.Join(l.Addresses, " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, l := range st.Leases {
		fmt.Fprintf(w, "lease %s: %s via %s for %s\n", l.Interface, l.Addr, l.Router, l.Duration)
	}
	if st.Firewall.Ruleset != "" {
		fmt.Fprintf(w, "firewall: ruleset %s, %d banned\n", st.Firewall.Ruleset, len(st.Firewall.Bans))
	}
	if st.Try != nil {
		fmt.Fprintf(w, "trial config reverts in %s unless confirmed (kiln net confirm)\n", st.Try.RevertsIn.Round(time.Second))
	}
	if st.LastError != "" {
		fmt.Fprintf(w, "last apply failed: %s\n", st.LastError)
	}
	return nil
}
