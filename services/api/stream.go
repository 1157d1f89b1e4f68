package api

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"kiln.dev/kiln/init/supervisor/supervisorapi"
	"kiln.dev/kiln/services/store"
)

// pingEvery keeps idle event streams (and proxies in between) alive.
const pingEvery = 15 * time.Second

// sseWriter writes Server-Sent Events; safe for concurrent use.
type sseWriter struct {
	// mu guards w.
	mu sync.Mutex
	w  http.ResponseWriter
	rc *http.ResponseController
}

func startSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w)}
	s.write("retry: 2000\n\n")
	return s
}

func (s *sseWriter) write(text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write([]byte(text)); err != nil {
		return err
	}
	return s.rc.Flush()
}

// send writes one event; id may be "" (the client keeps its last id).
func (s *sseWriter) send(id, event string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	var buf strings.Builder
	if id != "" {
		fmt.Fprintf(&buf, "id: %s\n", id)
	}
	fmt.Fprintf(&buf, "event: %s\ndata: %s\n\n", event, b)
	return s.write(buf.String())
}

// pinger writes a comment every pingEvery until ctx ends.
func (s *sseWriter) pinger(ctx context.Context) {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.write(": ping\n\n")
		}
	}
}

func wantsSSE(r *http.Request) bool {
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "text/event-stream" {
			return true
		}
	}
	return false
}

// streamContext ends with the request or when the server closes.
func (s *Server) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	go func() {
		select {
		case <-s.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func (s *Server) needSupervisor() error {
	if s.o.Supervisor == nil {
		return Errorf(http.StatusServiceUnavailable, CodeUnavailable, "", "the supervisor is not reachable from the API")
	}
	return nil
}

func (s *Server) supervisorStatus(ctx context.Context) (supervisorapi.Status, error) {
	if err := s.needSupervisor(); err != nil {
		return supervisorapi.Status{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := s.o.Supervisor.Status(ctx)
	if err != nil {
		return st, Errorf(http.StatusServiceUnavailable, CodeUnavailable, "", "supervisor status unavailable: %v", err)
	}
	return st, nil
}

// services returns the supervisor's status (every service's state).
func (s *Server) services(w http.ResponseWriter, r *http.Request) {
	st, err := s.supervisorStatus(r.Context())
	if err != nil {
		WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) knownService(ctx context.Context, name string) error {
	st, err := s.supervisorStatus(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(st.Services, func(v supervisorapi.ServiceStatus) bool { return v.Name == name }) {
		var names []string
		for _, v := range st.Services {
			names = append(names, v.Name)
		}
		return Errorf(http.StatusNotFound, CodeNotFound, "", "no service %q (services: %s)", name, strings.Join(names, ", "))
	}
	return nil
}

// serviceLogs returns a service's log lines after ?since= as JSON, or as an
// event stream (Accept: text/event-stream) that with ?follow=1 goes on until
// the client leaves. Each event's id is the line's seq, so a reconnecting
// EventSource resumes where it stopped (Last-Event-ID).
func (s *Server) serviceLogs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	var since uint64
	for _, v := range []string{r.URL.Query().Get("since"), r.Header.Get("Last-Event-ID")} {
		if v == "" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			WriteError(w, Errorf(http.StatusBadRequest, CodeBadRequest, "since", "since: want the last line number seen (0 for all)"))
			return
		}
		since = n
	}
	tail, err := intParam(r, "tail", 0, 0, 100000)
	if err != nil {
		WriteError(w, err)
		return
	}
	if err := s.knownService(ctx, name); err != nil {
		WriteError(w, err)
		return
	}
	follow := isTrue(r.URL.Query().Get("follow"))
	if !wantsSSE(r) {
		if follow {
			WriteError(w, Errorf(http.StatusBadRequest, CodeBadRequest, "follow", "follow: ask for Accept: text/event-stream to follow logs"))
			return
		}
		lines, err := s.o.Supervisor.Logs(ctx, name, since)
		if err != nil {
			WriteError(w, Errorf(http.StatusServiceUnavailable, CodeUnavailable, "", "reading logs: %v", err))
			return
		}
		if tail > 0 && len(lines) > tail {
			lines = lines[len(lines)-tail:]
		}
		if lines == nil {
			lines = []supervisorapi.Line{}
		}
		writeJSON(w, http.StatusOK, lines)
		return
	}
	release, ok := s.streamSlot(w, r)
	if !ok {
		return
	}
	defer release()
	sctx, cancel := s.streamContext(r)
	defer cancel()
	stream := startSSE(w)
	go stream.pinger(sctx)
	send := func(l supervisorapi.Line) error {
		return stream.send(strconv.FormatUint(l.Seq, 10), "line", l)
	}
	if !follow {
		lines, err := s.o.Supervisor.Logs(sctx, name, since)
		if err == nil {
			if tail > 0 && len(lines) > tail {
				lines = lines[len(lines)-tail:]
			}
			for _, l := range lines {
				if send(l) != nil {
					return
				}
			}
		}
		stream.send("", "end", map[string]string{})
		return
	}
	if tail > 0 && since == 0 {
		// Start with the last tail lines, then follow.
		if lines, err := s.o.Supervisor.Logs(sctx, name, 0); err == nil && len(lines) > tail {
			since = lines[len(lines)-tail-1].Seq
		}
	}
	if err := s.o.Supervisor.FollowLogs(sctx, name, since, send); err != nil && sctx.Err() == nil {
		s.log.Debug("log stream ended", "service", name, "err", err)
	}
}

func (s *Server) restartService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rs, ok := s.o.Supervisor.(Restarter)
	if !ok || s.o.Supervisor == nil {
		WriteError(w, Errorf(http.StatusServiceUnavailable, CodeUnavailable, "", "restarting services is not available"))
		return
	}
	if err := s.knownService(r.Context(), name); err != nil {
		WriteError(w, err)
		return
	}
	if err := rs.Restart(r.Context(), name); err != nil {
		WriteError(w, Errorf(http.StatusConflict, CodeConflict, "", "restarting %s: %v", name, err))
		return
	}
	s.log.Info("service restart requested", "service", name, "user", Caller(r).User)
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "restarting"})
}

// rawStatus passes the supervisor's status through (public, for monitoring;
// GET /healthz with Accept: application/json is the smaller form).
func (s *Server) rawStatus(w http.ResponseWriter, r *http.Request) {
	s.services(w, r)
}

type helloEvent struct {
	DataVersion int64 `json:"data_version"`
	BootEvent   int64 `json:"boot_event"`
}

// events streams what changes: "hosts" (hosts, MACs or lease addresses
// changed: reload), "leases" (any lease write), "boot" (one new boot event,
// id = its id, so a reconnect resumes) and "status" (the services' states).
// It waits on the shared change feed rather than polling the store itself.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	done, ok := s.followChanges(w, r)
	if !ok {
		return
	}
	defer done()
	snap, _ := s.feed.current()
	prev := snap.marks
	if !snap.ok {
		var err error
		if prev, err = s.marks(r.Context()); err != nil {
			WriteError(w, err)
			return
		}
	}
	lastBoot := prev.BootEvent
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 && n < lastBoot {
			lastBoot = n
		}
	}
	ctx, cancel := s.streamContext(r)
	defer cancel()
	stream := startSSE(w)
	go stream.pinger(ctx)
	if stream.send("", "hello", helloEvent{DataVersion: prev.Data, BootEvent: prev.BootEvent}) != nil {
		return
	}
	lastStatus := ""
	for {
		snap, changed := s.feed.current()
		if snap.status != "" && snap.status != lastStatus {
			lastStatus = snap.status
			if stream.send("", "status", json.RawMessage(snap.status)) != nil {
				return
			}
		}
		if snap.ok {
			if err := s.sendChanges(ctx, stream, prev, snap.marks, &lastBoot); err != nil {
				return
			}
			prev = snap.marks
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

func (s *Server) sendChanges(ctx context.Context, stream *sseWriter, prev, m store.ChangeMarks, lastBoot *int64) error {
	if m.Data != prev.Data {
		if err := stream.send("", "hosts", map[string]int64{"data_version": m.Data}); err != nil {
			return err
		}
	}
	if m.Leases != prev.Leases {
		if err := stream.send("", "leases", map[string]int64{}); err != nil {
			return err
		}
	}
	for m.BootEvent > *lastBoot {
		es, err := s.o.Store.BootEventsAfter(ctx, *lastBoot, 100)
		if err != nil || len(es) == 0 {
			return nil
		}
		for _, e := range es {
			if err := stream.send(strconv.FormatInt(e.ID, 10), "boot", toBootEventJSON(e)); err != nil {
				return err
			}
			*lastBoot = e.ID
		}
	}
	return nil
}
