package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/report"
	"kiln.dev/kiln/services/vetting/verdict"
)

// historyRuns is how many earlier runs of the host a report lists.
const historyRuns = 20

// ReportRun gathers what the report of run id shows: the run, the agent's
// report and inventory (artifacts), its events and the host's history.
func (o *Orchestrator) ReportRun(ctx context.Context, id int64) (report.Run, error) {
	r, err := o.Run(ctx, id)
	if err != nil {
		return report.Run{}, err
	}
	out := report.Run{ID: strconv.FormatInt(r.ID, 10), Host: r.Host, State: r.State, Profile: r.Profile,
		Wipe: r.Wipe, Hold: r.Hold, Created: r.Created, Started: r.Started, Ended: r.Ended,
		Verdict: verdict.Status(r.Verdict), Error: r.Error, HoldAddr: r.HoldAddr, HoldHostKey: r.HoldHostKey,
		Generated: o.now()}
	if h, err := o.st.HostByName(ctx, r.Host); err == nil {
		out.MACs = h.MACs
	}
	if b, err := o.ReadArtifact(id, "report.json"); err == nil {
		var rep protocol.Report
		if err := json.Unmarshal(b, &rep); err != nil {
			return report.Run{}, fmt.Errorf("run %d: its stored report is unreadable: %w", id, err)
		}
		out.Report = &rep
	} else if !errors.Is(err, ErrNotFound) {
		return report.Run{}, err
	}
	if b, err := o.ReadArtifact(id, "inventory.json"); err == nil {
		var inv protocol.Inventory
		if err := json.Unmarshal(b, &inv); err != nil {
			return report.Run{}, fmt.Errorf("run %d: its stored inventory is unreadable: %w", id, err)
		}
		out.Inventory = &inv
	} else if !errors.Is(err, ErrNotFound) {
		return report.Run{}, err
	}
	events, err := o.st.VetRunEvents(ctx, id)
	if err != nil {
		return report.Run{}, err
	}
	for _, e := range events {
		var pe protocol.Event
		if err := json.Unmarshal([]byte(e.Body), &pe); err == nil {
			out.Events = append(out.Events, pe)
		}
	}
	earlier, err := o.st.ListVetRuns(ctx, store.VetRunFilter{Host: r.Host, Limit: historyRuns + 1})
	if err != nil {
		return report.Run{}, err
	}
	for _, e := range earlier {
		if e.ID == r.ID {
			continue
		}
		out.History = append(out.History, report.HistoryItem{ID: strconv.FormatInt(e.ID, 10), State: e.State,
			Verdict: verdict.Status(e.Verdict), Ended: e.Ended,
			URL: fmt.Sprintf("/api/v1/vetting/runs/%d/report.html", e.ID)})
	}
	return out, nil
}

// SaveReports renders run id's HTML and JSON reports into its artifacts
// (report.html, run.json): what stays on data once the run is over.
func (o *Orchestrator) SaveReports(ctx context.Context, id int64) error {
	rr, err := o.ReportRun(ctx, id)
	if err != nil {
		return err
	}
	js, err := report.JSON(rr)
	if err != nil {
		return err
	}
	var html bytes.Buffer
	if err := report.HTML(&html, rr); err != nil {
		return err
	}
	var arts []store.VetArtifact
	for name, b := range map[string][]byte{"run.json": js, "report.html": html.Bytes()} {
		a, err := o.writeArtifactBytes(id, name, b)
		if err != nil {
			return err
		}
		arts = append(arts, a)
	}
	_, err = o.change(ctx, id, func(r *store.VetRun, u *store.VetUpdate) error {
		u.Artifacts = arts
		return nil
	})
	return err
}

// saveReports is SaveReports for a run that just ended or is now held; a
// failure is logged (the reports are rendered on demand anyway).
func (o *Orchestrator) saveReports(ctx context.Context, id int64) {
	if err := o.SaveReports(ctx, id); err != nil {
		o.log.Warn("saving the run's reports", "run", id, "err", err)
	}
}
