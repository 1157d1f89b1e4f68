package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// Client talks to a supervisor's control socket.
type Client struct {
	hc *http.Client
}

// NewClient returns a client for the control socket at path (see SocketPath).
func NewClient(path string) *Client {
	return &Client{hc: unixhttp.Client(path)}
}

func (c *Client) do(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://supervisor"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking the supervisor: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e struct{ Error string }
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return nil, fmt.Errorf("supervisor: %s", e.Error)
	}
	return resp, nil
}

// Status fetches GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/status")
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return Status{}, fmt.Errorf("decoding supervisor status: %w", err)
	}
	return st, nil
}

// Logs fetches a service's ring lines with Seq > since.
func (c *Client) Logs(ctx context.Context, name string, since uint64) ([]Line, error) {
	resp, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/logs/%s?since=%d", name, since))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var lines []Line
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("decoding log line: %w", err)
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading logs: %w", err)
	}
	return lines, nil
}

// FollowLogs streams a service's ring lines with Seq > since (GET
// /v1/logs/{name}?since=N&follow=1), calling fn for each, until ctx ends, fn
// returns an error (returned as is), or the supervisor ends the stream (nil);
// a cancelled ctx returns ctx.Err().
func (c *Client) FollowLogs(ctx context.Context, name string, since uint64, fn func(Line) error) error {
	resp, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/logs/%s?since=%d&follow=1", name, since))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("decoding log line: %w", err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("reading logs: %w", err)
	}
	return ctx.Err()
}

// Restart asks the supervisor to restart a service.
func (c *Client) Restart(ctx context.Context, name string) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/services/"+name+"/restart")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
