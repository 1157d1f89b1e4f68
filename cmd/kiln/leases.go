package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"
	"time"
)

type leaseJSON struct {
	IP       string    `json:"ip"`
	Subnet   string    `json:"subnet"`
	MAC      string    `json:"mac,omitempty"`
	Host     string    `json:"host,omitempty"`
	Hostname string    `json:"hostname,omitempty"`
	State    string    `json:"state"`
	Active   bool      `json:"active"`
	Expires  time.Time `json:"expires"`
}

// runLeases lists DHCP leases through the API:
// "kiln leases [--subnet NAME] [--all] [--json]".
func runLeases(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("leases", flag.ContinueOnError)
	fs.SetOutput(s.err)
	var o apiOptions
	o.register(fs)
	subnet := fs.String("subnet", "", "only this config subnet")
	all := fs.Bool("all", false, "also expired and released leases")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("leases: %v: %w", err, errUsage)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("leases: unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	c, err := o.client()
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
	var ls []leaseJSON
	if err := c.do(ctx, "GET", "/api/v1/leases?"+q.Encode(), nil, &ls); err != nil {
		return fmt.Errorf("leases: %w", err)
	}
	if *asJSON {
		return printJSON(s.out, ls)
	}
	return printLeases(s.out, ls, time.Now())
}

func printLeases(w io.Writer, ls []leaseJSON, now time.Time) error {
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
