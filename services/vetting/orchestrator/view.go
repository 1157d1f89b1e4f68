package orchestrator

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/verdict"
)

// View is a run as the API and the UI show it.
type View struct {
	ID        string            `json:"id"`
	Host      string            `json:"host"`
	State     string            `json:"state"`
	Active    bool              `json:"active"`
	Profile   string            `json:"profile"`
	Hold      bool              `json:"hold"`
	Wipe      bool              `json:"wipe"`
	Created   time.Time         `json:"created"`
	Started   *time.Time        `json:"started,omitempty"`
	Ended     *time.Time        `json:"ended,omitempty"`
	Verdict   string            `json:"verdict,omitempty"`
	Summary   string            `json:"summary"`
	Findings  []verdict.Finding `json:"findings"`
	Stage     string            `json:"stage,omitempty"`
	Progress  float64           `json:"progress"`
	Stages    []StageView       `json:"stages"`
	Holding   *HoldView         `json:"holding,omitempty"`
	Model     string            `json:"model,omitempty"`
	AgentAddr string            `json:"agent_addr,omitempty"`
	Error     string            `json:"error,omitempty"`
	ReportURL string            `json:"report_url"`
}

// StageView is one stage of a run.
type StageView struct {
	Name    string     `json:"name"`
	Status  string     `json:"status"`
	Started *time.Time `json:"started,omitempty"`
	Ended   *time.Time `json:"ended,omitempty"`
	Summary string     `json:"summary,omitempty"`
}

// HoldView says how to reach a held host.
type HoldView struct {
	Addr       string `json:"addr"`
	HostKey    string `json:"host_key,omitempty"`
	SSHCommand string `json:"ssh_command"`
	// ProxyCommand reaches the host through the appliance, for operators
	// who are not on the provisioning network.
	ProxyCommand string `json:"proxy_command"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// ViewOf renders r with its stages.
func ViewOf(r store.VetRun, stages []store.VetStage) View {
	v := View{ID: strconv.FormatInt(r.ID, 10), Host: r.Host, State: r.State, Active: r.Active, Profile: r.Profile,
		Hold: r.Hold, Wipe: r.Wipe, Created: r.Created, Started: timePtr(r.Started), Ended: timePtr(r.Ended),
		Verdict: r.Verdict, Summary: Summary(r), Findings: DecodeFindings(r.Findings), Stage: r.Stage,
		Progress: r.Progress, Stages: []StageView{}, Model: r.Model, AgentAddr: r.AgentAddr, Error: r.Error,
		ReportURL: fmt.Sprintf("/api/v1/vetting/runs/%d/report.html", r.ID)}
	if v.Findings == nil {
		v.Findings = []verdict.Finding{}
	}
	for _, s := range stages {
		v.Stages = append(v.Stages, StageView{Name: s.Name, Status: s.Status, Started: timePtr(s.Started),
			Ended: timePtr(s.Ended), Summary: s.Summary})
	}
	if r.State == StateHolding && r.HoldAddr != "" {
		v.Holding = &HoldView{Addr: r.HoldAddr, HostKey: r.HoldHostKey,
			SSHCommand:   SSHCommand(r, ""),
			ProxyCommand: fmt.Sprintf("kiln vet ssh %d", r.ID)}
	}
	return v
}

// SSHCommand is the ssh command line reaching held run r with the key file
// keyFile (default kiln-run-<id>.key) and its known_hosts file beside it.
func SSHCommand(r store.VetRun, keyFile string) string {
	if keyFile == "" {
		keyFile = fmt.Sprintf("kiln-run-%d.key", r.ID)
	}
	host, port := HoldHostPort(r)
	cmd := fmt.Sprintf("ssh -i %s -o IdentitiesOnly=yes -o UserKnownHostsFile=%s", keyFile,
		strings.TrimSuffix(keyFile, ".key")+".known_hosts")
	if port != "22" {
		cmd += " -p " + port
	}
	return cmd + " root@" + host
}

// HoldHostPort splits a held run's SSH address (port 22 when it names none).
func HoldHostPort(r store.VetRun) (host, port string) {
	host, port, err := net.SplitHostPort(r.HoldAddr)
	if err != nil {
		return r.HoldAddr, "22"
	}
	return host, port
}

// KnownHosts is the known_hosts line of held run r's SSH server.
func KnownHosts(r store.VetRun) string {
	if r.HoldHostKey == "" || r.HoldAddr == "" {
		return ""
	}
	host, port := HoldHostPort(r)
	name := host
	if port != "22" {
		name = "[" + host + "]:" + port
	}
	return name + " " + strings.TrimSpace(r.HoldHostKey)
}

// RunView returns run id as View.
func (o *Orchestrator) RunView(ctx context.Context, id int64) (View, error) {
	r, err := o.Run(ctx, id)
	if err != nil {
		return View{}, err
	}
	stages, err := o.st.VetStages(ctx, id)
	if err != nil {
		return View{}, err
	}
	return ViewOf(r, stages), nil
}

// List returns runs as views, newest first.
func (o *Orchestrator) List(ctx context.Context, f store.VetRunFilter) ([]View, error) {
	runs, err := o.st.ListVetRuns(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]View, 0, len(runs))
	for _, r := range runs {
		stages, err := o.st.VetStages(ctx, r.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, ViewOf(r, stages))
	}
	return out, nil
}
