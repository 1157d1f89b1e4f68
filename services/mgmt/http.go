package mgmt

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"kiln.dev/kiln/internal/unixhttp"
	"kiln.dev/kiln/services/api"
)

// statusSource returns the supervisor's status JSON (GET /v1/status).
type statusSource interface {
	Status(ctx context.Context) ([]byte, error)
}

// handlers serves the management endpoints.
type handlers struct {
	log       *slog.Logger
	status    statusSource
	httpsPort int // 0 when HTTPS is off
	// rest is the operator API and web UI (api.Server.Handler); nil serves
	// only /healthz and /api/v1/status.
	rest http.Handler
}

// api is the full handler, served over HTTPS (or over HTTP when HTTPS is off):
// /healthz and /api/v1/status here, everything else from the operator API.
func (h *handlers) api() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", h.healthz)
	// The supervisor's own bytes, public like /healthz (the API documents
	// the route; this serves it without decoding).
	mux.HandleFunc("GET /api/v1/status", h.apiStatus)
	if h.rest != nil {
		mux.Handle("/", h.rest)
	}
	return mux
}

// plain is the HTTP handler: /healthz directly, everything else redirected to
// HTTPS on the same host.
func (h *handlers) plain() http.Handler {
	if h.httpsPort == 0 {
		return h.api()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.HandleFunc("/", h.redirect)
	return mux
}

// redirect answers 308 with the same host, path and query on https.
func (h *handlers) redirect(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1] // IPv6 literal without a port
	}
	if host == "" {
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			host, _, _ = net.SplitHostPort(la.String())
		}
	}
	hostport := host
	if h.httpsPort != 443 {
		hostport = net.JoinHostPort(host, strconv.Itoa(h.httpsPort))
	} else if strings.Contains(host, ":") {
		hostport = "[" + host + "]"
	}
	http.Redirect(w, r, "https://"+hostport+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

// healthz answers "ok" while this process serves. A client that accepts JSON
// also gets the supervisor's overall readiness and each service's state.
func (h *handlers) healthz(w http.ResponseWriter, r *http.Request) {
	if !acceptsJSON(r) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
		return
	}
	out := struct {
		Status     string            `json:"status"`
		Ready      *bool             `json:"ready,omitempty"`
		Services   map[string]string `json:"services,omitempty"`
		Supervisor string            `json:"supervisor,omitempty"`
	}{Status: "ok"}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if b, err := h.status.Status(ctx); err != nil {
		out.Supervisor = "unreachable"
	} else {
		var st struct {
			Ready    bool `json:"ready"`
			Services []struct {
				Name  string `json:"name"`
				State string `json:"state"`
			} `json:"services"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			out.Supervisor = "unreadable status"
		} else {
			out.Ready = &st.Ready
			out.Services = make(map[string]string, len(st.Services))
			for _, s := range st.Services {
				out.Services[s.Name] = s.State
			}
		}
	}
	unixhttp.WriteJSON(w, http.StatusOK, out)
}

// apiStatus passes the supervisor's status JSON through.
func (h *handlers) apiStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	b, err := h.status.Status(ctx)
	if err != nil {
		h.log.Warn("supervisor status unavailable", "err", err)
		api.WriteError(w, api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "", "supervisor status unavailable: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func acceptsJSON(r *http.Request) bool {
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "application/json" {
			return true
		}
	}
	return false
}

// supervisorSocket reads the supervisor's status over its control socket.
type supervisorSocket struct {
	hc *http.Client
}

func newSupervisorSocket(path string) *supervisorSocket {
	return &supervisorSocket{hc: unixhttp.Client(path)}
}

func (s *supervisorSocket) Status(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://supervisor/v1/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking the supervisor: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading supervisor status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("supervisor status: %s", resp.Status)
	}
	return b, nil
}
