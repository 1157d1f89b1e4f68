// Package otahttp is the HTTP side of OTA updates, registered on the
// management service's API:
//
//	GET  /api/v1/update/status    both slots (version, generation, state,
//	                              last boot result), failed generations
//	POST /api/v1/update/bundle    push: the request body is the bundle,
//	                              streamed into the inactive slot;
//	                              ?tries=N ?retry_failed=1 ?reboot=1
//	POST /api/v1/update/rollback  {"to":"a","reboot":true}
//
// The management service mounts them on the operator API (Mount), so they
// take its authentication: status needs read access, the rest admin.
// Errors use the API's error shape ({"error": {"code", "message"}}) with a
// status that says whose fault it is: 400 malformed or corrupt bundle, 403
// bad signature or unknown key, 408 the upload stalled (no data for 2 min
// or not done in 2 h), 409 not now (another install runs, the
// running slot is not committed, generation not newer, failed before), 413
// too large, 422 wrong compatible string, 503 updates unavailable here.
package otahttp

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"kiln.dev/kiln/internal/unixhttp"
	"kiln.dev/kiln/ota/bundle"
	"kiln.dev/kiln/ota/install"
	"kiln.dev/kiln/ota/oplock"
	"kiln.dev/kiln/ota/slots"
	"kiln.dev/kiln/ota/stall"
	"kiln.dev/kiln/partitions"
	"kiln.dev/kiln/services/api"
)

// DefaultDeadlines bound an upload: nothing for two minutes, or two hours
// in all, and the push fails.
var DefaultDeadlines = stall.Deadlines{Idle: 2 * time.Minute, Overall: 2 * time.Hour}

// Installer installs a bundle (*install.Installer).
type Installer interface {
	Install(ctx context.Context, r io.Reader, req install.Request) (install.Result, error)
}

// Slots reads and rolls back the slots (*slots.Controller).
type Slots interface {
	Status(ctx context.Context) (slots.Status, error)
	RollBack(ctx context.Context, to partitions.Slot) error
}

// Handler serves the update routes.
type Handler struct {
	// Installer and Slots are nil when updates are unavailable; Unavailable
	// then says why.
	Installer   Installer
	Slots       Slots
	Unavailable error
	// Reboot asks for an orderly reboot (nil: the reboot parameter is refused).
	Reboot func() error
	// RebootDelay lets the response reach the client first (default 1 s).
	RebootDelay time.Duration
	// Deadlines bound a push's upload (DefaultDeadlines if zero): a
	// stalled upload fails the install, which releases the update lock.
	Deadlines stall.Deadlines
	Log       *slog.Logger
}

// Mounter adds a route behind the API's authentication (*api.Server).
type Mounter interface {
	Mount(pattern string, scope api.Scope, h http.Handler)
}

// Mount adds the routes: status for readers, push and rollback for admins.
func (h *Handler) Mount(m Mounter) {
	m.Mount("GET /api/v1/update/status", api.ScopeRead, http.HandlerFunc(h.status))
	m.Mount("POST /api/v1/update/bundle", api.ScopeAdmin, http.HandlerFunc(h.push))
	m.Mount("POST /api/v1/update/rollback", api.ScopeAdmin, http.HandlerFunc(h.rollback))
}

func (h *Handler) log() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log.With("component", "ota")
}

func (h *Handler) unavailable(w http.ResponseWriter) bool {
	if h.Installer != nil && h.Slots != nil {
		return false
	}
	msg := "over-the-air updates are unavailable on this system"
	if h.Unavailable != nil {
		msg = h.Unavailable.Error()
	}
	api.WriteError(w, api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "", "%s", msg))
	return true
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	if h.Slots == nil {
		h.unavailable(w)
		return
	}
	st, err := h.Slots.Status(r.Context())
	if err != nil {
		api.WriteError(w, api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "", "%v", err))
		return
	}
	unixhttp.WriteJSON(w, http.StatusOK, st)
}

// PushResponse is the answer to a successful push.
type PushResponse struct {
	install.Result
	Rebooting bool `json:"rebooting"`
}

func (h *Handler) push(w http.ResponseWriter, r *http.Request) {
	if h.unavailable(w) {
		return
	}
	q := r.URL.Query()
	req := install.Request{Source: "upload from " + r.RemoteAddr, RetryFailed: q.Get("retry_failed") == "1"}
	if t := q.Get("tries"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 || n > install.MaxTries {
			api.WriteError(w, api.Errorf(http.StatusBadRequest, api.CodeInvalid, "tries", "tries: must be a number from 1 to %d", install.MaxTries))
			return
		}
		req.Tries = n
	}
	reboot := q.Get("reboot") == "1"
	if reboot && h.Reboot == nil {
		api.WriteError(w, api.Errorf(http.StatusBadRequest, api.CodeInvalid, "reboot", "reboot: this system cannot be rebooted from here; reboot it yourself after the install"))
		return
	}
	d := h.Deadlines
	if d == (stall.Deadlines{}) {
		d = DefaultDeadlines
	}
	// On expiry a read deadline in the past ends a Read blocked on the body.
	rc := http.NewResponseController(w)
	tr := stall.Watch(r.Context(), d, func() { rc.SetReadDeadline(time.Now()) })
	defer tr.Stop()
	res, err := h.Installer.Install(tr.Context(), tr.Reader(r.Body), req)
	if err != nil {
		ae := apiError(err)
		h.log().Warn("push refused", "err", err, "remote", r.RemoteAddr)
		// Drain a little so the client sees the answer rather than a reset.
		io.CopyN(io.Discard, r.Body, 1<<20)
		api.WriteError(w, ae)
		return
	}
	unixhttp.WriteJSON(w, http.StatusOK, PushResponse{Result: res, Rebooting: reboot})
	if reboot {
		h.rebootSoon()
	}
}

// RollbackRequest is the body of POST /api/v1/update/rollback.
type RollbackRequest struct {
	To     partitions.Slot `json:"to"`
	Reboot bool            `json:"reboot"`
}

func (h *Handler) rollback(w http.ResponseWriter, r *http.Request) {
	if h.unavailable(w) {
		return
	}
	var req RollbackRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		api.WriteError(w, api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "", "body: %v (want {\"to\":\"a\"|\"b\",\"reboot\":true|false})", err))
		return
	}
	if _, err := partitions.ParseSlot(string(req.To)); err != nil {
		api.WriteError(w, api.Errorf(http.StatusBadRequest, api.CodeInvalid, "to", `to: must be "a" or "b"`))
		return
	}
	if req.Reboot && h.Reboot == nil {
		api.WriteError(w, api.Errorf(http.StatusBadRequest, api.CodeInvalid, "reboot", "reboot: this system cannot be rebooted from here"))
		return
	}
	if err := h.Slots.RollBack(r.Context(), req.To); err != nil {
		api.WriteError(w, apiError(err))
		return
	}
	h.log().Warn("rolled back through the API", "to", req.To, "remote", r.RemoteAddr)
	st, err := h.Slots.Status(r.Context())
	if err != nil {
		api.WriteError(w, api.Errorf(http.StatusInternalServerError, api.CodeInternal, "", "%v", err))
		return
	}
	unixhttp.WriteJSON(w, http.StatusOK, st)
	if req.Reboot {
		h.rebootSoon()
	}
}

func (h *Handler) rebootSoon() {
	d := h.RebootDelay
	if d == 0 {
		d = time.Second
	}
	time.AfterFunc(d, func() {
		if err := h.Reboot(); err != nil {
			h.log().Error("asking for a reboot", "err", err)
		}
	})
}

// apiError gives an OTA error its status and code in the API's shape; the
// message is the operator-facing error itself.
func apiError(err error) error {
	status, code := http.StatusInternalServerError, api.CodeInternal
	switch {
	case errors.Is(err, bundle.ErrSignature), errors.Is(err, bundle.ErrUnknownKey):
		status, code = http.StatusForbidden, "bad_signature"
	case errors.Is(err, bundle.ErrTooLarge):
		status, code = http.StatusRequestEntityTooLarge, api.CodeTooLarge
	case errors.Is(err, bundle.ErrIncompatible):
		status, code = http.StatusUnprocessableEntity, "incompatible"
	case errors.Is(err, bundle.ErrFormat), errors.Is(err, bundle.ErrCorrupt):
		status, code = http.StatusBadRequest, "invalid_bundle"
	case errors.Is(err, stall.ErrIdle), errors.Is(err, stall.ErrOverall):
		status, code = http.StatusRequestTimeout, "timeout"
	case errors.Is(err, oplock.ErrBusy):
		status, code = http.StatusConflict, "busy"
	case errors.Is(err, install.ErrNotCommitted), errors.Is(err, bundle.ErrGeneration),
		errors.Is(err, install.ErrFailedBefore), errors.Is(err, slots.ErrRollback):
		status, code = http.StatusConflict, api.CodeConflict
	case errors.Is(err, bundle.ErrNoKeys):
		status, code = http.StatusServiceUnavailable, api.CodeUnavailable
	}
	return api.Errorf(status, code, "", "%v", err)
}
