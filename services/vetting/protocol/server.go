package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Backend is the orchestrator's side of the protocol.
type Backend interface {
	// Hello registers the agent of run and returns what it should do.
	Hello(ctx context.Context, runID string, h Hello) (Assignment, error)
	// Record stores one message (*Inventory, *Events or *Report) of run.
	Record(ctx context.Context, runID string, m Message) error
}

// ErrRunOver is returned by a Backend for a run that was stopped or already
// reported; the server answers 410 and the agent stops.
var ErrRunOver = errors.New("the run is over")

// Options configure the server handler.
type Options struct {
	Tokens  TokenChecker
	Backend Backend
	// Now is the clock tokens are checked against (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
	// MaxDownload caps one throughput download (default 16 GiB).
	MaxDownload int64
}

// Body limits: an inventory of a large server is well under 1 MiB.
const (
	maxMessage = 8 << 20
	maxReport  = 32 << 20
)

// Paths.
const (
	PathHello  = "/vet/v1/hello"
	pathRuns   = "/vet/v1/runs/"
	throughput = "throughput"
)

// NewHandler returns the HTTP handler of the agent protocol:
//
//	POST /vet/v1/hello                     Hello → Assignment
//	POST /vet/v1/runs/{run}/inventory      Inventory
//	POST /vet/v1/runs/{run}/events         Events
//	POST /vet/v1/runs/{run}/report         Report
//	GET  /vet/v1/runs/{run}/throughput?bytes=N   N bytes to download
//	POST /vet/v1/runs/{run}/throughput     upload; answers Throughput
//
// Every request carries "Authorization: Bearer <token>". A missing, unknown
// or expired token is 401; a valid token of another run than the one in the
// path is 403. Errors are JSON {"error": "..."}.
func NewHandler(o Options) http.Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxDownload <= 0 {
		o.MaxDownload = 16 << 30
	}
	s := &server{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathHello, s.hello)
	mux.HandleFunc("POST "+pathRuns+"{run}/{kind}", s.record)
	mux.HandleFunc("GET "+pathRuns+"{run}/"+throughput, s.download)
	return mux
}

type server struct{ o Options }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, msg string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	writeJSON(w, code, apiError{Error: msg})
}

// authorize resolves the request's token to its run; with want set it must
// be that run. It answers the request itself when it returns false.
func (s *server) authorize(w http.ResponseWriter, r *http.Request, want string) (string, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		fail(w, http.StatusUnauthorized, "missing bearer token")
		return "", false
	}
	run, err := s.o.Tokens.CheckToken(r.Context(), tok, s.o.Now())
	switch {
	case errors.Is(err, ErrTokenExpired):
		s.o.Logger.Info("refused an expired token", "path", r.URL.Path, "remote", r.RemoteAddr)
		fail(w, http.StatusUnauthorized, "token expired: the run's time is up")
		return "", false
	case err != nil:
		s.o.Logger.Info("refused a token", "path", r.URL.Path, "remote", r.RemoteAddr, "error", err)
		fail(w, http.StatusUnauthorized, "invalid token")
		return "", false
	case want != "" && run != want:
		s.o.Logger.Warn("token of another run", "path", r.URL.Path, "remote", r.RemoteAddr, "token_run", run)
		fail(w, http.StatusForbidden, "the token belongs to another run")
		return "", false
	}
	if sc, ok := s.o.Tokens.(SourceChecker); ok {
		err := sc.CheckSource(r.Context(), run, remoteAddr(r))
		switch {
		case errors.Is(err, ErrWrongSource):
			s.o.Logger.Warn("run token used from another address than its agent's", "path", r.URL.Path, "remote", r.RemoteAddr, "run", run, "error", err)
			fail(w, http.StatusForbidden, "this run's token is bound to the address of its agent's first hello; restart the run to vet from another address")
			return "", false
		case err != nil:
			s.o.Logger.Error("checking the token's source", "run", run, "error", err)
			fail(w, http.StatusInternalServerError, "the orchestrator could not check this; retry")
			return "", false
		}
	}
	return run, true
}

// remoteAddr is the request's source address (invalid when unknown).
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (s *server) backendError(w http.ResponseWriter, run string, err error) {
	if errors.Is(err, ErrRunOver) {
		fail(w, http.StatusGone, err.Error())
		return
	}
	if errors.Is(err, ErrWrongSource) {
		s.o.Logger.Warn("hello from another address than the run's agent's", "run", run, "error", err)
		fail(w, http.StatusForbidden, "this run's token is bound to the address of its agent's first hello; restart the run to vet from another address")
		return
	}
	s.o.Logger.Error("backend failed", "run", run, "error", err)
	fail(w, http.StatusInternalServerError, "the orchestrator could not store this; retry")
}

func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit))
			return false
		}
		fail(w, http.StatusBadRequest, "malformed JSON: "+err.Error())
		return false
	}
	return true
}

func (s *server) hello(w http.ResponseWriter, r *http.Request) {
	run, ok := s.authorize(w, r, "")
	if !ok {
		return
	}
	var h Hello
	if !decode(w, r, maxMessage, &h) {
		return
	}
	if h.Protocol != Version {
		fail(w, http.StatusBadRequest, fmt.Sprintf("protocol version %d not spoken here (want %d); boot the vetting image of this appliance", h.Protocol, Version))
		return
	}
	h.Source = remoteAddr(r)
	a, err := s.o.Backend.Hello(r.Context(), run, h)
	if err != nil {
		s.backendError(w, run, err)
		return
	}
	a.RunID = run
	writeJSON(w, http.StatusOK, a)
}

func (s *server) record(w http.ResponseWriter, r *http.Request) {
	run, ok := s.authorize(w, r, r.PathValue("run"))
	if !ok {
		return
	}
	var m Message
	limit := int64(maxMessage)
	switch r.PathValue("kind") {
	case "inventory":
		m = &Inventory{}
	case "events":
		m = &Events{}
	case "report":
		m, limit = &Report{}, maxReport
	case throughput:
		s.upload(w, r)
		return
	default:
		fail(w, http.StatusNotFound, "unknown record kind")
		return
	}
	if !decode(w, r, limit, m) {
		return
	}
	if rep, ok := m.(*Report); ok && rep.RunID != run {
		fail(w, http.StatusBadRequest, fmt.Sprintf("report names run %q, the path %q", rep.RunID, run))
		return
	}
	if err := s.o.Backend.Record(r.Context(), run, m); err != nil {
		s.backendError(w, run, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// fillPattern is what downloads send: cheap to produce, not all zeros (so
// compression on the path cannot fake throughput).
var fillPattern = func() []byte {
	b := make([]byte, 1<<20)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}()

func (s *server) download(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authorize(w, r, r.PathValue("run")); !ok {
		return
	}
	n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
	if err != nil || n <= 0 {
		fail(w, http.StatusBadRequest, "bytes must be a positive count")
		return
	}
	n = min(n, s.o.MaxDownload)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.Header().Set("Cache-Control", "no-store")
	for n > 0 {
		chunk := fillPattern[:min(n, int64(len(fillPattern)))]
		if _, err := w.Write(chunk); err != nil {
			return // the agent hung up when its time was up
		}
		n -= int64(len(chunk))
	}
}

func (s *server) upload(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil && n == 0 {
		fail(w, http.StatusBadRequest, "reading the upload: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, Throughput{Bytes: n})
}
