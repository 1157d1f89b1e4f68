package console

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// StatusSource is the supervisor as the console sees it. The supervisor's
// client satisfies it through a small adapter.
type StatusSource interface {
	// Status returns every supervised service and the overall readiness.
	Status(ctx context.Context) (Status, error)
	// Logs writes the last n lines of a service's log ring to w, one line per
	// "\n". With follow it then keeps writing new lines until ctx is done and
	// returns nil (or ctx's error) then.
	Logs(ctx context.Context, service string, n int, follow bool, w io.Writer) error
}

// Status is the part of the supervisor's status the console shows.
type Status struct {
	// Ready is true once every enabled service is ready ("kiln: ready").
	Ready    bool
	Services []Service
}

// Service is one supervised service.
type Service struct {
	Name     string
	State    string    // the supervisor's word: starting, ready, backoff, stopped, …
	Ready    bool      // the service signalled READY=1 and is still running
	PID      int       // 0 when not running
	Restarts int       // restarts since boot
	Since    time.Time // when State was entered; zero if unknown
	LastExit string    // how the last run ended ("exit status 1", "signal: killed"); "" if never
}

// readiness summarises st in a few words: "ready" or "not ready (2 of 5 services ready)".
func readiness(st Status) string {
	if st.Ready {
		return "ready"
	}
	n := 0
	for _, sv := range st.Services {
		if sv.Ready {
			n++
		}
	}
	return fmt.Sprintf("not ready (%d of %d services ready)", n, len(st.Services))
}

// status is menu item 1.
func (s *session) status(ctx context.Context) error {
	if s.c.Services == nil {
		return fmt.Errorf("service status: %w", errNotAvailable)
	}
	qctx, cancel := query(ctx)
	defer cancel()
	st, err := s.c.Services.Status(qctx)
	if err != nil {
		return fmt.Errorf("reading service status (the supervisor may be down; its log is on the console): %w", err)
	}
	s.printf("system: %s\n", readiness(st))
	writeServices(s.out, st.Services, s.now())
	return nil
}

// writeServices prints the service table.
func writeServices(w io.Writer, svcs []Service, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tPID\tRESTARTS\tSINCE\tLAST EXIT")
	for _, sv := range svcs {
		pid := "-"
		if sv.PID > 0 {
			pid = strconv.Itoa(sv.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", sv.Name, orDash(sv.State), pid, sv.Restarts, age(sv.Since, now), orDash(sv.LastExit))
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age formats how long ago t was, compactly: 42s, 5m03s, 2h07m, 3d04h.
func age(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := max(now.Sub(t), 0).Truncate(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}
