// Package nfshttp is the operator API's root image routes (mounted on
// services/api by mgmt): list the versions with the hosts that boot and use
// them, import an archive or squashfs image as a new version, promote and
// remove versions.
package nfshttp

import (
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/nfs"
	"kiln.dev/kiln/services/nfs/roots"
	"kiln.dev/kiln/services/store"
)

// Handler answers the routes.
type Handler struct {
	Roots  *roots.Manager
	Config config.Provisioning
	// StateDir is the data partition's state directory (the plan's input).
	StateDir string
	Log      *slog.Logger
	Now      func() time.Time
}

// Mounter adds a route behind the API's authentication (*api.Server).
type Mounter interface {
	Mount(pattern string, scope api.Scope, h http.Handler)
}

// Mount adds the routes: listing for readers, changes for writers.
func (h *Handler) Mount(m Mounter) {
	m.Mount("GET /api/v1/roots", api.ScopeRead, h.with(h.list))
	m.Mount("POST /api/v1/roots/{name}", api.ScopeWrite, h.with(h.importImage))
	m.Mount("POST /api/v1/roots/{ref}/promote", api.ScopeWrite, h.with(h.promote))
	m.Mount("DELETE /api/v1/roots/{ref}", api.ScopeWrite, h.with(h.remove))
}

func (h *Handler) with(f func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			if errors.Is(err, roots.ErrDataFull) {
				err = api.Errorf(http.StatusInsufficientStorage, "data_full", "image",
					"%v: nothing was stored; remove old versions (kiln roots rm NAME@VERSION) or give the appliance a bigger disk", err)
			}
			api.WriteError(w, err)
		}
	})
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// RootJSON is one root image version.
type RootJSON struct {
	Ref        string    `json:"ref"` // "name@version", what hosts pin and commands take
	Name       string    `json:"name"`
	Version    int       `json:"version"`
	Promoted   bool      `json:"promoted"`
	Size       int64     `json:"size"`  // bytes of its files
	Files      int64     `json:"files"` // entries
	Source     string    `json:"source,omitempty"`
	Created    time.Time `json:"created"`
	PromotedAt time.Time `json:"promoted_at,omitzero"`
	// Export is the path clients mount, relative to the NFS pseudo-root.
	Export string `json:"export"`
	// Boots are the hosts whose boot script names this version now.
	Boots []string `json:"boots"`
	// InUse are the hosts whose NFS client used it within the last hour.
	InUse []string `json:"in_use"`
}

// ListJSON is GET /api/v1/roots.
type ListJSON struct {
	Roots []RootJSON `json:"roots"`
	// Refused are hosts naming a root image that cannot be served, and why.
	Refused []RefusalJSON `json:"refused"`
}

// RefusalJSON is a host the exports leave out.
type RefusalJSON struct {
	Host   string `json:"host"`
	Addr   string `json:"addr,omitempty"`
	Reason string `json:"reason"`
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	now := h.now()
	images, err := h.Roots.Store.RootImages(ctx)
	if err != nil {
		return err
	}
	in, err := nfs.Desired(ctx, h.Roots.Store, h.Config, h.StateDir, now)
	if err != nil {
		return err
	}
	// The plan says who boots what; an unservable plan (a bad export root)
	// still lists the images.
	plan, _ := nfs.MakePlan(in)
	boots := map[string][]string{}
	for host, m := range plan.Mounts {
		if m.Root != "" {
			boots[m.Root] = append(boots[m.Root], host)
		}
	}
	uses, err := h.Roots.Store.NFSUses(ctx)
	if err != nil {
		return err
	}
	inUse := map[string][]string{}
	for _, u := range uses {
		if now.Sub(u.Seen) <= nfs.InUse {
			inUse[u.Export] = append(inUse[u.Export], u.Host)
		}
	}
	out := ListJSON{Roots: []RootJSON{}, Refused: []RefusalJSON{}}
	for _, ri := range images {
		export := "/roots/" + ri.Name + "/" + strconv.Itoa(ri.Version)
		b := boots[export]
		slices.Sort(b)
		out.Roots = append(out.Roots, RootJSON{Ref: ri.Ref(), Name: ri.Name, Version: ri.Version, Promoted: ri.Promoted,
			Size: ri.Size, Files: ri.Files, Source: ri.Source, Created: ri.Created, PromotedAt: ri.PromotedAt,
			Export: export, Boots: orEmpty(b), InUse: orEmpty(inUse[export])})
	}
	for _, rf := range plan.Refused {
		j := RefusalJSON{Host: rf.Host, Reason: rf.Reason}
		if rf.Addr.IsValid() {
			j.Addr = rf.Addr.String()
		}
		out.Refused = append(out.Refused, j)
	}
	api.WriteJSON(w, http.StatusOK, out)
	return nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// POST /api/v1/roots/{name}?source=FILE[&promote=true]: the body is a tar
// archive (plain, gzip, xz or zstd) or a squashfs image.
func (h *Handler) importImage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	promote, err := boolParam(q.Get("promote"), "promote")
	if err != nil {
		return err
	}
	got, err := h.Roots.Import(r.Context(), r.PathValue("name"), r.Body, q.Get("source"), promote)
	if err != nil {
		return err
	}
	h.Log.Info("root image imported", "root", got.Ref(), "size", got.Size, "files", got.Files, "skipped", got.Skipped,
		"promoted", got.Promoted, "user", caller(r))
	w.Header().Set("Location", "/api/v1/roots/"+got.Ref())
	api.WriteJSON(w, http.StatusCreated, ImportJSON{RootJSON: toJSON(got.RootImage), Skipped: got.Skipped})
	return nil
}

// ImportJSON is the answer to an import.
type ImportJSON struct {
	RootJSON
	// Skipped counts device nodes and FIFOs left out (clients mount devtmpfs).
	Skipped int `json:"skipped"`
}

func toJSON(ri store.RootImage) RootJSON {
	return RootJSON{Ref: ri.Ref(), Name: ri.Name, Version: ri.Version, Promoted: ri.Promoted, Size: ri.Size, Files: ri.Files,
		Source: ri.Source, Created: ri.Created, PromotedAt: ri.PromotedAt,
		Export: "/roots/" + ri.Name + "/" + strconv.Itoa(ri.Version), Boots: []string{}, InUse: []string{}}
}

func (h *Handler) promote(w http.ResponseWriter, r *http.Request) error {
	ri, err := h.Roots.Promote(r.Context(), r.PathValue("ref"))
	if err != nil {
		return err
	}
	h.Log.Info("root image promoted", "root", ri.Ref(), "user", caller(r))
	api.WriteJSON(w, http.StatusOK, toJSON(ri))
	return nil
}

// DELETE /api/v1/roots/{ref}[?force=true]
func (h *Handler) remove(w http.ResponseWriter, r *http.Request) error {
	force, err := boolParam(r.URL.Query().Get("force"), "force")
	if err != nil {
		return err
	}
	ref := r.PathValue("ref")
	if err := h.Roots.Remove(r.Context(), ref, force); err != nil {
		return err
	}
	h.Log.Info("root image removed", "root", ref, "force", force, "user", caller(r))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func boolParam(v, field string) (bool, error) {
	switch v {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	}
	return false, api.Errorf(http.StatusBadRequest, api.CodeBadRequest, field, "%s=%q: use true or false", field, v)
}

func caller(r *http.Request) string {
	if p := api.Caller(r); p != nil {
		return p.User
	}
	return ""
}
