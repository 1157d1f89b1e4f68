package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"
	"time"

	"kiln.dev/kiln/services/api/apiclient"
	"kiln.dev/kiln/services/api/wire"
)

// runLeases lists DHCP leases through the API:
// "kiln leases [--subnet NAME] [--all] [--json]".
func runLeases(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("leases", flag.ContinueOnError)
	fs.SetOutput(s.err)
	var o apiclient.Options
	o.Register(fs)
	subnet := fs.String("subnet", "", "only this config subnet")
	all := fs.Bool("all", false, "also expired and released leases")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("leases: %v: %w", err, errUsage)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("leases: unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	c, err := o.Client()
	if err != nil {
		return fmt.Errorf("leases: %w", err)
	}
	q := url.Values{}
	if *subnet != "" {
		q.Set("subnet", *subnet)
	}
	if !*all {
		q.Set("active", "true")
	}
	ls, err := c.Leases(ctx, q)
	if err != nil {
		return fmt.Errorf("leases: %w", err)
	}
	if *asJSON {
		return printJSON(s.out, ls)
	}
	return printLeases(s.out, ls, time.Now())
}

func printLeases(w io.Writer, ls []wire.Lease, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tMAC\tHOST\tSTATE\tEXPIRES\tSUBNET")
	for _, l := range ls {
		host := l.Host
		if host == "" && l.Hostname != "" {
			host = "(" + l.Hostname + ")"
		}
		exp := "in " + roundDuration(l.Expires.Sub(now))
		if !l.Expires.After(now) {
			exp = roundDuration(now.Sub(l.Expires)) + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", l.IP, dash(l.MAC), dash(host), l.State, exp, l.Subnet)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
