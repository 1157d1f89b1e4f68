// Package iscsihttp is the operator API's volume and iSCSI-initiator
// routes (mounted on services/api by mgmt): list, create, clone, upload,
// grow and delete volumes, and make a host's CHAP credentials, shown once.
package iscsihttp

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/iscsi"
	"kiln.dev/kiln/services/store"
)

// Handler answers the routes. A nil Manager answers 503 with Unavailable.
type Handler struct {
	Manager *iscsi.Manager
	// Unavailable says why there is no Manager (e.g. no provisioning.domain).
	Unavailable error
	Log         *slog.Logger
}

// Mounter adds a route behind the API's authentication (*api.Server).
type Mounter interface {
	Mount(pattern string, scope api.Scope, h http.Handler)
}

// Mount adds the routes: listing for readers, volume changes for writers,
// CHAP credentials (secrets) for admins.
func (h *Handler) Mount(m Mounter) {
	m.Mount("GET /api/v1/volumes", api.ScopeRead, h.with(h.list))
	m.Mount("POST /api/v1/volumes", api.ScopeWrite, h.with(h.create))
	m.Mount("PUT /api/v1/volumes/image", api.ScopeWrite, h.with(h.upload))
	m.Mount("PATCH /api/v1/volumes/{label...}", api.ScopeWrite, h.with(h.grow))
	m.Mount("DELETE /api/v1/volumes/{label...}", api.ScopeWrite, h.with(h.remove))
	m.Mount("GET /api/v1/hosts/{name}/iscsi", api.ScopeRead, h.with(h.initiator))
	m.Mount("POST /api/v1/hosts/{name}/iscsi", api.ScopeAdmin, h.with(h.setInitiator))
}

func (h *Handler) with(f func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.Manager == nil {
			msg := "volumes are not available on this appliance"
			if h.Unavailable != nil {
				msg += ": " + h.Unavailable.Error()
			}
			api.WriteError(w, api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "", "%s", msg))
			return
		}
		if err := f(w, r); err != nil {
			api.WriteError(w, toAPI(err))
		}
	})
}

// toAPI maps the iscsi package's errors to the API's error shape.
func toAPI(err error) error {
	switch {
	case errors.Is(err, iscsi.ErrQuota):
		return api.Errorf(http.StatusInsufficientStorage, "quota", "size", "%v", err)
	case errors.Is(err, iscsi.ErrConfirm):
		return api.Errorf(http.StatusUnprocessableEntity, api.CodeInvalid, "confirm", "%v", err)
	}
	return err
}

// VolumeJSON is one volume as the API shows it.
type VolumeJSON struct {
	Label     string    `json:"label"`          // "host/name", or "name" for a golden volume
	Host      string    `json:"host,omitempty"` // "" for a golden volume
	Name      string    `json:"name"`
	Size      int64     `json:"size"`      // logical bytes, what the initiator sees
	Allocated int64     `json:"allocated"` // bytes taken on the data partition
	Source    string    `json:"source,omitempty"`
	Target    string    `json:"target,omitempty"` // the host's target IQN
	LUN       int       `json:"lun"`              // its LUN on that target (-1 for a golden volume)
	Created   time.Time `json:"created"`
	Updated   time.Time `json:"updated"`
}

// ListJSON is GET /api/v1/volumes.
type ListJSON struct {
	Volumes []VolumeJSON `json:"volumes"`
	// Space is the data partition: total and free bytes, the free space kept
	// for the appliance, and what volumes may still write.
	Space SpaceJSON `json:"space"`
}

// SpaceJSON is the data partition's space as the quota sees it.
type SpaceJSON struct {
	Total    int64 `json:"total"`
	Free     int64 `json:"free"`
	Reserve  int64 `json:"reserve"`
	Promised int64 `json:"promised"`
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) error {
	vs, err := h.Manager.Volumes(r.Context())
	if err != nil {
		return err
	}
	space, err := h.Manager.Space()
	if err != nil {
		return err
	}
	out := ListJSON{Volumes: []VolumeJSON{}, Space: SpaceJSON{Total: space.Total, Free: space.Free, Reserve: space.Reserve}}
	lun := map[string]int{}
	for _, v := range vs {
		j := toJSON(v)
		if v.Host != "" {
			j.LUN = lun[v.Host] // LUNs follow name order, as iscsi.Desired numbers them
			lun[v.Host]++
		}
		out.Space.Promised += max(v.Size-v.Allocated, 0)
		out.Volumes = append(out.Volumes, j)
	}
	api.WriteJSON(w, http.StatusOK, out)
	return nil
}

func toJSON(v iscsi.VolumeInfo) VolumeJSON {
	return VolumeJSON{Label: iscsi.Label(v.Host, v.Name), Host: v.Host, Name: v.Name, Size: v.Size, Allocated: v.Allocated,
		Source: v.Source, Target: v.Target, LUN: -1, Created: v.Created, Updated: v.Updated}
}

// CreateRequest is POST /api/v1/volumes.
type CreateRequest struct {
	Host string `json:"host"` // "" makes a golden volume
	Name string `json:"name"`
	Size int64  `json:"size"` // bytes, a whole number of MiB; 0 with from: the source's size
	From string `json:"from"` // clone this volume ("host/name" or a golden "name")
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) error {
	var in CreateRequest
	if err := api.DecodeJSON(w, r, 0, &in); err != nil {
		return err
	}
	v, err := h.Manager.CreateVolume(r.Context(), in.Host, in.Name, in.Size, iscsi.Source{Volume: in.From})
	if err != nil {
		return err
	}
	h.Log.Info("volume created", "volume", iscsi.Label(v.Host, v.Name), "size", v.Size, "source", v.Source, "user", caller(r))
	return h.created(w, r, v)
}

// upload makes a volume from a raw disk image in the body:
// PUT /api/v1/volumes/image?host=H&name=N[&size=BYTES]. Without size the
// volume is the image's Content-Length rounded up to a whole MiB.
func (h *Handler) upload(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	size := r.ContentLength
	if s := q.Get("size"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "size", "size %q is not a byte count", s)
		}
		size = n
	} else if size < 0 {
		return api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "size", "send Content-Length or give size=BYTES")
	} else {
		size = (size + store.VolumeAlign - 1) / store.VolumeAlign * store.VolumeAlign
	}
	name := q.Get("image_name")
	if name == "" {
		name = q.Get("name") + ".raw"
	}
	v, err := h.Manager.CreateVolume(r.Context(), q.Get("host"), q.Get("name"), size, iscsi.Source{Image: r.Body, ImageName: name})
	if err != nil {
		return err
	}
	h.Log.Info("volume created from an image", "volume", iscsi.Label(v.Host, v.Name), "size", v.Size, "user", caller(r))
	return h.created(w, r, v)
}

func (h *Handler) created(w http.ResponseWriter, r *http.Request, v store.Volume) error {
	info := iscsi.VolumeInfo{Volume: v}
	if v.Host != "" {
		info.Target = h.Manager.Names.Target(v.Host)
	}
	info.Allocated, _ = iscsi.Allocated(h.Manager.Files.Path(v.Host, v.Name))
	w.Header().Set("Location", "/api/v1/volumes/"+iscsi.Label(v.Host, v.Name))
	api.WriteJSON(w, http.StatusCreated, toJSON(info))
	return nil
}

// GrowRequest is PATCH /api/v1/volumes/{label}.
type GrowRequest struct {
	Size int64 `json:"size"` // the new size in bytes; never smaller
}

func (h *Handler) grow(w http.ResponseWriter, r *http.Request) error {
	var in GrowRequest
	if err := api.DecodeJSON(w, r, 0, &in); err != nil {
		return err
	}
	host, name := iscsi.SplitLabel(r.PathValue("label"))
	v, err := h.Manager.GrowVolume(r.Context(), host, name, in.Size)
	if err != nil {
		return err
	}
	h.Log.Info("volume grown", "volume", r.PathValue("label"), "size", v.Size, "user", caller(r))
	info := iscsi.VolumeInfo{Volume: v}
	info.Allocated, _ = iscsi.Allocated(h.Manager.Files.Path(v.Host, v.Name))
	api.WriteJSON(w, http.StatusOK, toJSON(info))
	return nil
}

// remove deletes a volume: DELETE /api/v1/volumes/{label}?confirm={label}.
func (h *Handler) remove(w http.ResponseWriter, r *http.Request) error {
	label := r.PathValue("label")
	host, name := iscsi.SplitLabel(label)
	if err := h.Manager.DeleteVolume(r.Context(), host, name, r.URL.Query().Get("confirm")); err != nil {
		return err
	}
	h.Log.Info("volume deleted", "volume", label, "user", caller(r))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// InitiatorJSON is a host's initiator without its secrets.
type InitiatorJSON struct {
	Host       string    `json:"host"`
	IQN        string    `json:"initiator_iqn"`
	Target     string    `json:"target_iqn"`
	User       string    `json:"chap_user"`
	MutualUser string    `json:"mutual_user,omitempty"`
	Updated    time.Time `json:"updated"`
}

func (h *Handler) initiator(w http.ResponseWriter, r *http.Request) error {
	in, err := h.Manager.Store.InitiatorOf(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, InitiatorJSON{Host: in.Host, IQN: in.IQN, Target: h.Manager.Names.Target(in.Host),
		User: in.CHAPUser, MutualUser: in.MutualUser, Updated: in.Updated})
	return nil
}

// InitiatorRequest is POST /api/v1/hosts/{name}/iscsi: new CHAP secrets
// (the old ones stop working at the host's next login).
type InitiatorRequest struct {
	IQN    string `json:"initiator_iqn"` // "" keeps the stored one or takes kiln's default
	Mutual bool   `json:"mutual"`        // also make a secret the target proves to the host
}

func (h *Handler) setInitiator(w http.ResponseWriter, r *http.Request) error {
	var in InitiatorRequest
	if err := api.DecodeJSON(w, r, 0, &in); err != nil {
		return err
	}
	c, err := h.Manager.SetInitiator(r.Context(), r.PathValue("name"), in.IQN, in.Mutual)
	if err != nil {
		return err
	}
	h.Log.Info("CHAP secrets made", "host", c.Host, "initiator", c.IQN, "mutual", in.Mutual, "user", caller(r))
	w.Header().Set("Cache-Control", "no-store")
	api.WriteJSON(w, http.StatusCreated, c)
	return nil
}

// caller names who made a change, for the log.
func caller(r *http.Request) string {
	if p := api.Caller(r); p != nil {
		return p.User
	}
	return ""
}
