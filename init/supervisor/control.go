package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"kiln.dev/kiln/internal/unixhttp"
)

// listenControl binds <RunDir>/supervisor.sock and serves Handler on it.
// The caller holds s.mu.
func (s *Supervisor) listenControl() error {
	path := SocketPath(s.opts.RunDir)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale control socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("binding control socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("binding control socket: %w", err)
	}
	s.ctlLn = ln
	s.ctl = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	s.ctl.RegisterOnShutdown(func() { close(s.ctlClosing) }) // ends log streams
	go func() {
		if err := s.ctl.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("control socket stopped", "err", err)
		}
	}()
	return nil
}

// Handler serves the control API (see the package doc).
func (s *Supervisor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		unixhttp.WriteJSON(w, http.StatusOK, s.Status())
	})
	mux.HandleFunc("GET /v1/logs/{name}", s.serveLogs)
	mux.HandleFunc("POST /v1/services/{name}/restart", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Restart(r.PathValue("name")); err != nil {
			code := http.StatusConflict
			if errors.Is(err, ErrUnknownService) {
				code = http.StatusNotFound
			}
			unixhttp.WriteJSON(w, code, map[string]string{"error": err.Error()})
			return
		}
		unixhttp.WriteJSON(w, http.StatusAccepted, map[string]string{"status": "restarting"})
	})
	return mux
}

// serveLogs writes a service's ring lines after ?since= as JSON Lines; with
// ?follow=1 it keeps streaming until the client goes away or Stop.
func (s *Supervisor) serveLogs(w http.ResponseWriter, r *http.Request) {
	var since uint64
	if q := r.URL.Query().Get("since"); q != "" {
		n, err := strconv.ParseUint(q, 10, 64)
		if err != nil {
			unixhttp.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "since must be a line number (the last seq you saw, 0 for all)"})
			return
		}
		since = n
	}
	follow := r.URL.Query().Get("follow") == "1"
	name := r.PathValue("name")
	lines, wake, err := s.Logs(name, since)
	if err != nil {
		unixhttp.WriteJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	for {
		for _, l := range lines {
			if err := enc.Encode(l); err != nil {
				return
			}
			since = l.Seq
		}
		if !follow {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-wake:
		case <-r.Context().Done():
			return
		case <-s.ctlClosing:
			return
		}
		lines, wake, _ = s.Logs(name, since)
	}
}
