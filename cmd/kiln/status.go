package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"kiln.dev/kiln/init/supervisor"
	"kiln.dev/kiln/services/api/apiclient"
)

// errNotReady makes "kiln status" exit 1 while a service is not ready.
var errNotReady = errors.New("not every enabled service is ready")

// runStatus prints the supervisor's service status: "kiln status [--run DIR]
// [--json]", or an appliance's through its API with --url URL (the token of
// kiln login).
func runStatus(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(s.err)
	runDir := fs.String("run", "/run/kiln", "the supervisor's runtime directory (kiln serve: <state>/run)")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	var o apiclient.Options
	o.Register(fs) // --url: ask an appliance's API instead of the local socket
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("status: %v: %w", err, errUsage)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("status: unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var st supervisor.Status
	if o.URL != "" {
		c, err := o.Client()
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		if err := c.Do(ctx, "GET", "/api/v1/services", nil, &st); err != nil {
			return fmt.Errorf("status: %w", err)
		}
	} else {
		sock := supervisor.SocketPath(*runDir)
		var err error
		if st, err = supervisor.NewClient(sock).Status(ctx); err != nil {
			return fmt.Errorf("status: no supervisor answers at %s (%w): is kiln running? for kiln serve pass --run <state>/run", sock, err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(s.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
	} else if err := printStatus(s.out, st, time.Now()); err != nil {
		return err
	}
	if !st.Ready {
		return errNotReady
	}
	return nil
}

// printStatus writes st as a table, durations relative to now.
func printStatus(w io.Writer, st supervisor.Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tPID\tRESTARTS\tSINCE\tDETAIL")
	var notReady []string
	for _, sv := range st.Services {
		state := string(sv.State)
		if !sv.Enabled {
			state = "disabled"
		} else if sv.State != supervisor.StateReady {
			notReady = append(notReady, sv.Name)
		}
		pid := "-"
		if sv.PID != 0 {
			pid = strconv.Itoa(sv.PID)
		}
		var detail []string
		if sv.CrashLoop {
			detail = append(detail, "CRASH LOOP")
		}
		if len(sv.WaitingFor) > 0 {
			detail = append(detail, "waiting for "+strings.Join(sv.WaitingFor, ", "))
		}
		if sv.StatusText != "" {
			detail = append(detail, sv.StatusText)
		}
		if sv.LastExit != "" && (sv.State != supervisor.StateReady || sv.Restarts > 0) {
			detail = append(detail, "last exit: "+sv.LastExit)
		}
		if sv.NextStart != nil {
			detail = append(detail, "next start in "+roundDuration(sv.NextStart.Sub(now)))
		}
		since := "-"
		if sv.Enabled {
			since = roundDuration(now.Sub(sv.Since))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", sv.Name, state, pid, sv.Restarts, since, strings.Join(detail, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if st.Ready {
		_, err := fmt.Fprintln(w, "\nready")
		return err
	}
	_, err := fmt.Fprintf(w, "\nnot ready: %s\n", strings.Join(notReady, ", "))
	return err
}

func roundDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}
