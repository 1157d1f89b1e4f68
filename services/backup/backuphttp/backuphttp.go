// Package backuphttp serves backups over the operator API: a fresh backup
// downloaded on request, and the list and files of scheduled ones.
package backuphttp

import (
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/backup"
)

// Mounter adds a route to the API (*api.Server).
type Mounter interface {
	MountRoute(r api.Route, h http.Handler)
}

// Handler answers the backup routes.
type Handler struct {
	// Source returns what to back up at a time (the running mgmt's store).
	Source func(now time.Time) backup.Source
	// Dir holds the scheduled backups.
	Dir string
	Log *slog.Logger
	// busy is held while a backup is written: one at a time, since a
	// passphrase costs scrypt's 256 MiB and a second of CPU.
	busy sync.Mutex
}

// Request is POST /api/v1/backup's body: a passphrase or a public key.
type Request struct {
	Passphrase string `json:"passphrase,omitempty"`
	PublicKey  string `json:"public_key,omitempty"`
}

// File is a scheduled backup on the appliance.
type File struct {
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
}

// List is GET /api/v1/backups' answer.
type List struct {
	Files []File `json:"files"`
	// Last is the last scheduled backup's result; absent before the first.
	Last *backup.Status `json:"last,omitempty"`
}

// Mount adds the routes. Backups hold password hashes, tokens and keys, so
// the downloads are Credentials routes: never for an anonymous caller.
func (h *Handler) Mount(m Mounter) {
	m.MountRoute(api.Route{Method: "POST", Path: "/api/v1/backup", Scope: api.ScopeAdmin, Credentials: true,
		Summary: "Download a new encrypted backup (database snapshot, config, certificates, keys) for a passphrase or an age public key",
		Request: Request{}, RawResponse: "application/octet-stream"}, http.HandlerFunc(h.create))
	m.MountRoute(api.Route{Method: "GET", Path: "/api/v1/backups", Scope: api.ScopeAdmin,
		Summary: "Scheduled backups on the appliance, and the last one's result", Response: List{}}, http.HandlerFunc(h.list))
	m.MountRoute(api.Route{Method: "GET", Path: "/api/v1/backups/{name}", Scope: api.ScopeAdmin, Credentials: true,
		Summary: "Download a scheduled backup", RawResponse: "application/octet-stream"}, http.HandlerFunc(h.download))
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	var req Request
	if err := api.DecodeJSON(w, r, 0, &req); err != nil {
		api.WriteError(w, err)
		return
	}
	var key backup.Key
	var err error
	switch {
	case req.Passphrase != "" && req.PublicKey != "":
		api.WriteError(w, api.Errorf(http.StatusBadRequest, api.CodeInvalid, "passphrase", "passphrase: give a passphrase or a public_key, not both"))
		return
	case req.PublicKey != "":
		if key, err = backup.ParseKeyFile([]byte(req.PublicKey)); err != nil {
			api.WriteError(w, api.Errorf(http.StatusBadRequest, api.CodeInvalid, "public_key", "public_key: %v", err))
			return
		}
	default:
		if key, err = backup.Passphrase(req.Passphrase, 0); err != nil {
			api.WriteError(w, api.Errorf(http.StatusBadRequest, api.CodeInvalid, "passphrase", "passphrase: %v", err))
			return
		}
	}
	if !h.busy.TryLock() {
		api.WriteError(w, api.Errorf(http.StatusConflict, api.CodeConflict, "", "another backup is being written; try again when it is done"))
		return
	}
	defer h.busy.Unlock()
	now := time.Now()
	src := h.Source(now)
	name := backup.FileName(src.Hostname, now)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	m, err := backup.Create(r.Context(), w, src, key)
	if err != nil {
		// The status is sent: abort the connection so that the client
		// sees a broken transfer rather than a clean end (the partial file
		// lacks its last chunk anyway, which every restore refuses).
		h.Log.Error("backup download failed", "err", err, "remote", r.RemoteAddr)
		panic(http.ErrAbortHandler)
	}
	h.Log.Info("backup downloaded", "file", name, "files", len(m.Files), "user", callerName(r), "remote", r.RemoteAddr)
}

func callerName(r *http.Request) string {
	if p := api.Caller(r); p != nil {
		return p.User
	}
	return ""
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	out := List{Files: []File{}}
	entries, err := os.ReadDir(h.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		api.WriteError(w, err)
		return
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || !strings.HasSuffix(e.Name(), backup.FileSuffix) || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		out.Files = append(out.Files, File{Name: e.Name(), Size: info.Size(), Modified: info.ModTime().UTC()})
	}
	sort.Slice(out.Files, func(i, j int) bool { return out.Files[i].Modified.After(out.Files[j].Modified) })
	if st, err := backup.ReadStatus(h.Dir); err == nil {
		out.Last = &st
	}
	api.WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) download(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name != filepath.Base(name) || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, backup.FileSuffix) {
		api.WriteError(w, api.Errorf(http.StatusNotFound, api.CodeNotFound, "name", "no scheduled backup %q (GET /api/v1/backups lists them)", name))
		return
	}
	f, err := os.Open(filepath.Join(h.Dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		api.WriteError(w, api.Errorf(http.StatusNotFound, api.CodeNotFound, "name", "no scheduled backup %q (GET /api/v1/backups lists them)", name))
		return
	} else if err != nil {
		api.WriteError(w, err)
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		api.WriteError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	http.ServeContent(w, r, name, info.ModTime(), f)
}
