package netconf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/vishvananda/netns"

	"kiln.dev/kiln/internal/unixhttp"
	"kiln.dev/kiln/services/config"
)

// SocketName is the API socket in the run directory.
const SocketName = "netconf.sock"

// maxConfig bounds a posted config file.
const maxConfig = 1 << 20

// TryResult answers a try.
type TryResult struct {
	Plan            []string  `json:"plan"`
	FirewallChanged bool      `json:"firewall_changed"`
	Deadline        time.Time `json:"deadline"`
}

type apiError struct {
	Error string `json:"error"`
}

// Handler serves the netconf API (HTTP over the unix socket):
//
//	GET  /v1/status                     Status
//	POST /v1/try?timeout=60s  (body: a whole kiln.yaml)  TryResult
//	POST /v1/confirm
func Handler(m *Manager, g *Guard) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := m.Status()
		if err != nil {
			unixhttp.WriteJSON(w, http.StatusInternalServerError, apiError{err.Error()})
			return
		}
		st.Try = g.Pending()
		unixhttp.WriteJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST /v1/try", func(w http.ResponseWriter, r *http.Request) {
		timeout := DefaultTryTimeout
		if s := r.URL.Query().Get("timeout"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < time.Second || d > time.Hour {
				unixhttp.WriteJSON(w, http.StatusBadRequest, apiError{fmt.Sprintf("timeout %q: use a duration between 1s and 1h, e.g. 60s", s)})
				return
			}
			timeout = d
		}
		c, err := config.Parse(http.MaxBytesReader(w, r.Body, maxConfig))
		if err != nil {
			unixhttp.WriteJSON(w, http.StatusBadRequest, apiError{err.Error()})
			return
		}
		res, err := g.Try(r.Context(), c, timeout)
		switch {
		case errors.Is(err, ErrTryPending):
			unixhttp.WriteJSON(w, http.StatusConflict, apiError{err.Error()})
			return
		case errors.Is(err, config.ErrInvalid), errPlan(err):
			unixhttp.WriteJSON(w, http.StatusUnprocessableEntity, apiError{err.Error()})
			return
		case err != nil:
			unixhttp.WriteJSON(w, http.StatusInternalServerError, apiError{err.Error()})
			return
		}
		out := TryResult{Plan: res.Plan.Strings(), FirewallChanged: res.FirewallChanged}
		if p := g.Pending(); p != nil {
			out.Deadline = p.Deadline
		}
		unixhttp.WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/confirm", func(w http.ResponseWriter, r *http.Request) {
		if err := g.Confirm(); err != nil {
			unixhttp.WriteJSON(w, http.StatusConflict, apiError{err.Error()})
			return
		}
		unixhttp.WriteJSON(w, http.StatusOK, struct{}{})
	})
	return mux
}

// Client talks to a running netconf service over its socket.
type Client struct {
	http *http.Client
}

// NewClient returns a client for the socket at path (<run>/netconf.sock).
func NewClient(path string) *Client {
	return &Client{http: &http.Client{Timeout: 30 * time.Second, Transport: unixhttp.Transport(path)}}
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://netconf"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("asking the netconf service (is it running? kiln status): %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s", e.Error)
		}
		return fmt.Errorf("netconf answered %s", resp.Status)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Status returns the network plane's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Try applies the config file's network and firewall sections in try mode.
func (c *Client) Try(ctx context.Context, configYAML []byte, timeout time.Duration) (TryResult, error) {
	var res TryResult
	q := url.Values{}
	if timeout > 0 {
		q.Set("timeout", timeout.String())
	}
	err := c.do(ctx, http.MethodPost, "/v1/try?"+q.Encode(), configYAML, &res)
	return res, err
}

// Confirm keeps the trial config.
func (c *Client) Confirm(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/confirm", nil, nil)
}

// StatusHandler serves the network status for the management API (GET): the
// netconf service's when it runs (the network is managed), otherwise the
// links as they are, read directly (kiln does not manage them then).
func StatusHandler(runDir string) http.Handler {
	cl := NewClient(filepath.Join(runDir, SocketName))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		st, err := cl.Status(ctx)
		if err != nil {
			st, err = LocalStatus()
		}
		if err != nil {
			unixhttp.WriteJSON(w, http.StatusServiceUnavailable, apiError{"network status unavailable: " + err.Error()})
			return
		}
		unixhttp.WriteJSON(w, http.StatusOK, st)
	})
}

// LocalStatus reads the process's own links without the netconf service.
func LocalStatus() (Status, error) {
	sys, err := OpenSystem(netns.None())
	if err != nil {
		return Status{}, err
	}
	defer sys.Close()
	m := NewManager(context.Background(), ManagerOptions{System: sys})
	return m.Status()
}
