package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"kiln.dev/kiln/services/api/wire"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/orchestrator"
	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/report"
)

// sshJSON is what an operator needs to log in to a held host.
type sshJSON struct {
	User       string `json:"user"`
	Addr       string `json:"addr"`
	PrivateKey string `json:"private_key"`
	KnownHosts string `json:"known_hosts"`
	// Command assumes the key in kiln-run-<id>.key and the known_hosts
	// line in kiln-run-<id>.known_hosts, on the provisioning network;
	// TunnelCommand reaches the host through the appliance, with
	// ProxyCommand (kiln vet tunnel <id>) as ssh's ProxyCommand.
	Command       string `json:"command"`
	ProxyCommand  string `json:"proxy_command"`
	TunnelCommand string `json:"tunnel_command"`
}

// vetEventJSON is an agent event of a run in the stream.
type vetEventJSON struct {
	Run   string         `json:"run"`
	Event protocol.Event `json:"event"`
}

func (s *Server) vetRoutes() []Route {
	h := func(f http.HandlerFunc) http.Handler { return f }
	return []Route{
		{Method: "GET", Path: "/api/v1/vetting/runs", Scope: ScopeRead, Summary: "Vetting runs, newest first",
			Query:    []string{"host: only this host's runs", "active: true for runs under way only", "limit: at most this many (default 50)"},
			Response: []orchestrator.View{}, handler: h(s.listRuns)},
		{Method: "GET", Path: "/api/v1/vetting/runs/{id}", Scope: ScopeRead, Summary: "One vetting run with its stages",
			Response: orchestrator.View{}, handler: h(s.getRun)},
		{Method: "GET", Path: "/api/v1/vetting/runs/{id}/events", Scope: ScopeRead, Summary: "A run's agent events (stage start, progress, end, notes), oldest first",
			Response: []protocol.Event{}, handler: h(s.runEvents)},
		{Method: "GET", Path: "/api/v1/vetting/runs/{id}/report.json", Scope: ScopeRead, Summary: "A run's report as JSON (schema in docs/vetting.md)",
			RawResponse: "application/json", handler: h(s.runReportJSON)},
		{Method: "GET", Path: "/api/v1/vetting/runs/{id}/report.html", Scope: ScopeRead, Summary: "A run's report as a self-contained HTML page with charts",
			RawResponse: "text/html", handler: h(s.runReportHTML)},
		{Method: "GET", Path: "/api/v1/vetting/stream", Scope: ScopeRead, Summary: "Server-Sent Events: run (a run changed; its view) and agent (an agent event); id = change id, resumes with Last-Event-ID",
			RawResponse: "text/event-stream", handler: h(s.vetStream)},
		{Method: "POST", Path: "/api/v1/vetting/runs", Scope: ScopeWrite, Summary: "Start a vetting run of a host (wipe: admin only, with confirm_wipe = the host name)",
			Request: orchestrator.StartRequest{}, Response: orchestrator.View{}, Status: http.StatusCreated, handler: h(s.startRun)},
		{Method: "POST", Path: "/api/v1/vetting/runs/{id}/stop", Scope: ScopeWrite, Summary: "Stop a run under way (its host powers off)",
			Response: orchestrator.View{}, handler: h(s.stopRun)},
		{Method: "POST", Path: "/api/v1/vetting/runs/{id}/release", Scope: ScopeWrite, Summary: "End the hold of a held run (its host powers off)",
			Response: orchestrator.View{}, handler: h(s.releaseRun)},
		{Method: "GET", Path: "/api/v1/vetting/runs/{id}/ssh", Scope: ScopeAdmin, Credentials: true, Summary: "The held host's SSH login: the run's private key, known_hosts line and command",
			Response: sshJSON{}, handler: h(s.runSSH)},
		{Method: "GET", Path: "/api/v1/vetting/runs/{id}/tunnel", Scope: ScopeAdmin, Credentials: true, Summary: "Upgrade to a TCP stream to the held host's SSH server (kiln vet ssh uses it as ProxyCommand)",
			RawResponse: "application/octet-stream", Status: http.StatusSwitchingProtocols, handler: h(s.runTunnel)},
	}
}

func (s *Server) needVetting() error {
	if s.o.Vetting == nil {
		return Errorf(http.StatusServiceUnavailable, CodeUnavailable, "", "vetting is not running on this appliance")
	}
	return nil
}

// vetError maps orchestrator errors to the API's.
func vetError(err error) error {
	switch {
	case errors.Is(err, orchestrator.ErrNotFound):
		return Errorf(http.StatusNotFound, CodeNotFound, "", "%v", err)
	case errors.Is(err, orchestrator.ErrState):
		return Errorf(http.StatusConflict, CodeConflict, "", "%v", err)
	case errors.Is(err, orchestrator.ErrInvalid):
		field := ""
		var fe interface{ Field() string }
		if errors.As(err, &fe) {
			field = fe.Field()
		}
		return Errorf(http.StatusUnprocessableEntity, CodeInvalid, field, "%v", err)
	}
	return err
}

func (s *Server) runID(r *http.Request) (int64, error) {
	if err := s.needVetting(); err != nil {
		return 0, err
	}
	id, err := orchestrator.ParseRunID(r.PathValue("id"))
	if err != nil {
		return 0, Errorf(http.StatusNotFound, CodeNotFound, "", "no run %q", r.PathValue("id"))
	}
	return id, nil
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	if err := s.needVetting(); err != nil {
		WriteError(w, err)
		return
	}
	q := r.URL.Query()
	f := store.VetRunFilter{Host: q.Get("host"), ActiveOnly: isTrue(q.Get("active")), Limit: 50}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 1000 {
			WriteError(w, Errorf(http.StatusBadRequest, CodeBadRequest, "limit", "limit must be 1 to 1000"))
			return
		}
		f.Limit = n
	}
	runs, err := s.o.Vetting.List(r.Context(), f)
	if err != nil {
		WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, runs)
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	id, err := s.runID(r)
	if err == nil {
		var v orchestrator.View
		if v, err = s.o.Vetting.RunView(r.Context(), id); err == nil {
			writeJSON(w, http.StatusOK, v)
			return
		}
	}
	WriteError(w, vetError(err))
}

func (s *Server) runEvents(w http.ResponseWriter, r *http.Request) {
	id, err := s.runID(r)
	if err == nil {
		_, err = s.o.Vetting.Run(r.Context(), id)
	}
	if err != nil {
		WriteError(w, vetError(err))
		return
	}
	rr, err := s.o.Vetting.ReportRun(r.Context(), id)
	if err != nil {
		WriteError(w, err)
		return
	}
	if rr.Events == nil {
		rr.Events = []protocol.Event{}
	}
	writeJSON(w, http.StatusOK, rr.Events)
}

func (s *Server) reportRun(w http.ResponseWriter, r *http.Request) (report.Run, bool) {
	id, err := s.runID(r)
	if err != nil {
		WriteError(w, vetError(err))
		return report.Run{}, false
	}
	rr, err := s.o.Vetting.ReportRun(r.Context(), id)
	if err != nil {
		WriteError(w, vetError(err))
		return report.Run{}, false
	}
	return rr, true
}

func (s *Server) runReportJSON(w http.ResponseWriter, r *http.Request) {
	rr, ok := s.reportRun(w, r)
	if !ok {
		return
	}
	b, err := report.JSON(rr)
	if err != nil {
		WriteError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`inline; filename="kiln-run-%s.json"`, rr.ID))
	w.Write(b)
}

func (s *Server) runReportHTML(w http.ResponseWriter, r *http.Request) {
	rr, ok := s.reportRun(w, r)
	if !ok {
		return
	}
	var b bytes.Buffer
	if err := report.HTML(&b, rr); err != nil {
		WriteError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", report.ContentSecurityPolicy)
	w.Header().Set("X-Frame-Options", "SAMEORIGIN")
	w.Write(b.Bytes())
}

func (s *Server) startRun(w http.ResponseWriter, r *http.Request) {
	if err := s.needVetting(); err != nil {
		WriteError(w, err)
		return
	}
	var req orchestrator.StartRequest
	if err := DecodeJSON(w, r, 0, &req); err != nil {
		WriteError(w, err)
		return
	}
	if req.Wipe && Caller(r).Scope.Rank() < store.RoleAdmin.Rank() {
		WriteError(w, Errorf(http.StatusForbidden, CodeForbidden, "wipe", "a destructive run erases the host's disks: only an admin may start one"))
		return
	}
	run, err := s.o.Vetting.Start(r.Context(), req)
	if err != nil {
		WriteError(w, vetError(err))
		return
	}
	s.log.Info("vetting run started", "run", run.ID, "host", run.Host, "profile", run.Profile, "wipe", run.Wipe, "user", Caller(r).User)
	v, err := s.o.Vetting.RunView(r.Context(), run.ID)
	if err != nil {
		WriteError(w, err)
		return
	}
	w.Header().Set("Location", "/api/v1/vetting/runs/"+v.ID)
	writeJSON(w, http.StatusCreated, v)
}

func (s *Server) stopRun(w http.ResponseWriter, r *http.Request) {
	s.runAction(w, r, "stopped", s.o.Vetting.Stop)
}

func (s *Server) releaseRun(w http.ResponseWriter, r *http.Request) {
	s.runAction(w, r, "released", s.o.Vetting.Release)
}

func (s *Server) runAction(w http.ResponseWriter, r *http.Request, what string, act func(context.Context, int64) (store.VetRun, error)) {
	id, err := s.runID(r)
	if err == nil {
		_, err = act(r.Context(), id)
	}
	if err != nil {
		WriteError(w, vetError(err))
		return
	}
	s.log.Info("vetting run "+what, "run", id, "user", Caller(r).User)
	v, err := s.o.Vetting.RunView(r.Context(), id)
	if err != nil {
		WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// heldRun returns the run of the request if it is held and its SSH server
// is known.
func (s *Server) heldRun(r *http.Request) (store.VetRun, error) {
	id, err := s.runID(r)
	if err != nil {
		return store.VetRun{}, err
	}
	run, err := s.o.Vetting.Run(r.Context(), id)
	if err != nil {
		return store.VetRun{}, vetError(err)
	}
	if run.State != orchestrator.StateHolding || run.HoldAddr == "" || run.SSHPrivate == "" {
		return store.VetRun{}, Errorf(http.StatusConflict, CodeConflict, "", "run %d is not holding its host (it is %s); start a run with hold on, and it holds the host if it fails", id, run.State)
	}
	return run, nil
}

func (s *Server) runSSH(w http.ResponseWriter, r *http.Request) {
	run, err := s.heldRun(r)
	if err != nil {
		WriteError(w, err)
		return
	}
	s.log.Info("held host's SSH key handed out", "run", run.ID, "host", run.Host, "user", Caller(r).User)
	host, _ := orchestrator.HoldHostPort(run)
	writeJSON(w, http.StatusOK, sshJSON{User: "root", Addr: run.HoldAddr, PrivateKey: run.SSHPrivate,
		KnownHosts: orchestrator.KnownHosts(run), Command: orchestrator.SSHCommand(run, ""),
		ProxyCommand:  fmt.Sprintf("kiln vet tunnel %d", run.ID),
		TunnelCommand: fmt.Sprintf("ssh -i kiln-run-%d.key -o UserKnownHostsFile=kiln-run-%d.known_hosts -o ProxyCommand='kiln vet tunnel %d' root@%s", run.ID, run.ID, run.ID, host)})
}

// runTunnel bridges the caller to the held host's SSH server: the appliance
// sits between the management and provisioning networks, and operators
// rarely sit on the latter.
func (s *Server) runTunnel(w http.ResponseWriter, r *http.Request) {
	run, err := s.heldRun(r)
	if err != nil {
		WriteError(w, err)
		return
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	up, err := d.DialContext(r.Context(), "tcp", run.HoldAddr)
	if err != nil {
		WriteError(w, Errorf(http.StatusBadGateway, CodeUnavailable, "", "cannot reach the held host's SSH server at %s: %v", run.HoldAddr, err))
		return
	}
	defer up.Close()
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		WriteError(w, Errorf(http.StatusBadRequest, CodeBadRequest, "", "this connection cannot be upgraded (use HTTP/1.1): %v", err))
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Time{})
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", TunnelProtocol)
	if err := rw.Flush(); err != nil {
		return
	}
	s.log.Info("tunnel to a held host opened", "run", run.ID, "addr", run.HoldAddr, "user", Caller(r).User)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		// Bytes the client sent right after its request are in rw's buffer.
		io.Copy(up, rw)
		if c, ok := up.(*net.TCPConn); ok {
			c.CloseWrite()
		}
	}()
	go func() {
		defer wg.Done()
		io.Copy(conn, up)
		if c, ok := conn.(interface{ CloseWrite() error }); ok {
			c.CloseWrite()
		} else {
			conn.Close()
		}
	}()
	wg.Wait()
}

func decodeEvent(body string) protocol.Event {
	var e protocol.Event
	json.Unmarshal([]byte(body), &e)
	return e
}

// TunnelProtocol is the Upgrade token of the tunnel route.
const TunnelProtocol = wire.TunnelProtocol

// vetStream sends "run" (the run's view) whenever a run changes and "agent"
// for every agent event, each with its change id; a reconnect with
// Last-Event-ID resumes after it.
func (s *Server) vetStream(w http.ResponseWriter, r *http.Request) {
	if err := s.needVetting(); err != nil {
		WriteError(w, err)
		return
	}
	done, ok := s.followChanges(w, r)
	if !ok {
		return
	}
	defer done()
	last, err := s.o.Store.LastVetEventID(r.Context())
	if err != nil {
		WriteError(w, err)
		return
	}
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 && n < last {
			last = n
		}
	}
	ctx, cancel := s.streamContext(r)
	defer cancel()
	stream := startSSE(w)
	go stream.pinger(ctx)
	if stream.send("", "hello", map[string]int64{"last_id": last}) != nil {
		return
	}
	for {
		snap, changed := s.feed.current()
		es, err := []store.VetEvent(nil), error(nil)
		if snap.vetLast > last {
			es, err = s.o.Store.VetEventsAfter(ctx, last, 500)
		}
		if err == nil {
			// One "run" per run and batch: a burst of progress events
			// reloads a tile once.
			runs := map[int64]int64{}
			for _, e := range es {
				if e.Kind == store.VetEventRun {
					runs[e.RunID] = e.ID
				}
			}
			for _, e := range es {
				id := strconv.FormatInt(e.ID, 10)
				if e.Kind != store.VetEventRun {
					if err := stream.send(id, "agent", vetEventJSON{Run: strconv.FormatInt(e.RunID, 10), Event: decodeEvent(e.Body)}); err != nil {
						return
					}
				} else if runs[e.RunID] == e.ID {
					v, err := s.o.Vetting.RunView(ctx, e.RunID)
					if err == nil {
						if err := stream.send(id, "run", v); err != nil {
							return
						}
					} else if errors.Is(err, orchestrator.ErrNotFound) {
						if err := stream.send(id, "run_deleted", map[string]string{"id": strconv.FormatInt(e.RunID, 10)}); err != nil {
							return
						}
					}
				}
				last = e.ID
			}
		}
		if err == nil && len(es) > 0 && snap.vetLast > last {
			continue // more than one batch behind
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}
