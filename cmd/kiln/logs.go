package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"net/url"
	"strconv"

	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/services/api/apiclient"
)

// runLogs prints a service's log: "kiln logs [-f] [--tail N] [--json] SERVICE".
// Through the API of the last kiln login (or --url); with --run DIR, or when
// not logged in, from the local supervisor's socket. -f follows the log and,
// over the API, reconnects and resumes after the last line seen.
func runLogs(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("logs", flag.ContinueOnError)
	fs.SetOutput(s.err)
	var o apiclient.Options
	o.Register(fs)
	runDir := fs.String("run", "", "read the local supervisor's socket in this runtime directory instead (default /run/kiln when not logged in)")
	follow := fs.Bool("f", false, "follow: keep printing new lines")
	tail := fs.Int("tail", 0, "only the last N lines (0: all the supervisor keeps)")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	var pos []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return fmt.Errorf("logs: %v: %w", err, errUsage)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) != 1 {
		return fmt.Errorf("logs: name one service (kiln logs [-f] SERVICE): %w", errUsage)
	}
	name := pos[0]
	print := func(l supervisor.Line) error {
		if *asJSON {
			b, _ := json.Marshal(l)
			_, err := fmt.Fprintf(s.out, "%s\n", b)
			return err
		}
		_, err := fmt.Fprintln(s.out, l.String())
		return err
	}
	if *runDir != "" || !o.LoggedIn() {
		if *runDir == "" {
			*runDir = "/run/kiln"
		}
		return localLogs(ctx, supervisor.NewClient(supervisor.SocketPath(*runDir)), name, *tail, *follow, print)
	}
	c, err := o.Client()
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	if !*follow {
		var lines []supervisor.Line
		q := url.Values{}
		if *tail > 0 {
			q.Set("tail", strconv.Itoa(*tail))
		}
		if err := c.Do(ctx, "GET", "/api/v1/services/"+url.PathEscape(name)+"/logs?"+q.Encode(), nil, &lines); err != nil {
			return fmt.Errorf("logs: %w", err)
		}
		for _, l := range lines {
			if err := print(l); err != nil {
				return err
			}
		}
		return nil
	}
	return followAPILogs(ctx, c, name, *tail, print)
}

// localLogs reads the supervisor's socket directly.
func localLogs(ctx context.Context, sc *supervisor.Client, name string, tail int, follow bool, print func(supervisor.Line) error) error {
	lines, err := sc.Logs(ctx, name, 0)
	if err != nil {
		return fmt.Errorf("logs: %w (not logged in to an appliance: run kiln login, or pass --run <state>/run for kiln serve)", err)
	}
	if tail > 0 && len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	var since uint64
	for _, l := range lines {
		if err := print(l); err != nil {
			return err
		}
		since = l.Seq
	}
	if !follow {
		return nil
	}
	err = sc.FollowLogs(ctx, name, since, print)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// followAPILogs streams over SSE and reconnects with Last-Event-ID.
func followAPILogs(ctx context.Context, c *apiclient.Client, name string, tail int, print func(supervisor.Line) error) error {
	path := "/api/v1/services/" + url.PathEscape(name) + "/logs?follow=1"
	first := path
	if tail > 0 {
		first += "&tail=" + strconv.Itoa(tail)
	}
	err := c.Follow(ctx, first, func(string) string { return path }, func(e apiclient.Event) error {
		if e.Event != "line" {
			return nil
		}
		var l supervisor.Line
		if err := json.Unmarshal([]byte(e.Data), &l); err != nil {
			return fmt.Errorf("decoding a line: %w", err)
		}
		return print(l)
	})
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	return nil
}
