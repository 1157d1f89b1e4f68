package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"kiln.dev/kiln/services/api/wire"
	"kiln.dev/kiln/services/store"
)

// ImportBodyLimit bounds host import files.
const ImportBodyLimit = 8 << 20

func toHostJSON(h store.Host) wire.Host {
	out := wire.Host{HostInput: wire.HostInput{Name: h.Name, MACs: h.MACs, Role: h.Role, BootProfile: string(h.BootProfile),
		Aliases: h.Aliases, ExpectedSpec: h.ExpectedSpec, WoLMAC: h.WoLMAC, SwitchPort: h.SwitchPort,
		CircuitID: h.CircuitID, RemoteID: h.RemoteID, IPXEBinary: h.IPXEBinary, Kernel: h.Kernel, Initrd: h.Initrd, Cmdline: h.Cmdline,
		RootImage: h.RootImage, Home: h.Home},
		Created: h.Created, Updated: h.Updated}
	if out.MACs == nil {
		out.MACs = []string{}
	}
	if h.IPv4.IsValid() {
		out.IPv4 = h.IPv4.String()
	}
	return out
}

// toHost converts input; problems the store cannot see (an address that
// does not parse, a spec that is not a mapping) come back as field errors.
func toHost(in wire.HostInput) (store.Host, store.Errors) {
	h := store.Host{Name: in.Name, MACs: in.MACs, Role: strings.TrimSpace(in.Role), BootProfile: store.BootProfile(in.BootProfile),
		Aliases: in.Aliases, ExpectedSpec: in.ExpectedSpec, WoLMAC: in.WoLMAC, SwitchPort: in.SwitchPort,
		CircuitID: in.CircuitID, RemoteID: in.RemoteID, IPXEBinary: in.IPXEBinary,
		Kernel: strings.TrimSpace(in.Kernel), Initrd: strings.TrimSpace(in.Initrd), Cmdline: in.Cmdline,
		RootImage: in.RootImage, Home: in.Home}
	var es store.Errors
	if s := strings.TrimSpace(in.IPv4); s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			es = append(es, &store.FieldError{Field: "ipv4", Problem: fmt.Sprintf("%q is not an IPv4 address (e.g. 10.0.0.11)", in.IPv4), Err: store.ErrInvalid})
		} else {
			h.IPv4 = a
		}
	}
	if strings.TrimSpace(h.ExpectedSpec) == "" {
		h.ExpectedSpec = ""
	} else {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(h.ExpectedSpec), &doc); err == nil {
			if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
				es = append(es, &store.FieldError{Field: "expected_spec", Problem: "must be a YAML mapping such as \"cpus: 8\" on its own line", Err: store.ErrInvalid})
			}
		} // the store reports YAML syntax errors
	}
	return h, es
}

// checkOrStore validates h (with the conversion problems es) and, unless
// dryRun, stores it with save.
func (s *Server) checkOrStore(r *http.Request, h store.Host, es store.Errors, save func(store.Host) (store.Host, error)) (store.Host, error) {
	if len(es) > 0 || isTrue(r.URL.Query().Get("dry_run")) {
		err := s.o.Store.CheckHost(r.Context(), h)
		var more store.Errors
		if errors.As(err, &more) {
			es = append(es, more...)
		} else if err != nil {
			return h, err
		}
		if len(es) > 0 {
			return h, es
		}
		return h, nil
	}
	return save(h)
}

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) {
	hs, err := s.o.Store.ListHosts(r.Context())
	if err != nil {
		WriteError(w, err)
		return
	}
	out, err := s.withState(r, hs)
	if err != nil {
		WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// withState adds each host's current lease and newest boot event.
func (s *Server) withState(r *http.Request, hs []store.Host) ([]wire.Host, error) {
	ctx := r.Context()
	leases, err := s.o.Store.Leases(ctx, "")
	if err != nil {
		return nil, err
	}
	now := s.o.Now()
	leaseOf := map[string]store.Lease{}
	for _, l := range leases {
		if l.MAC == "" || !l.Active(now) {
			continue
		}
		if old, ok := leaseOf[l.MAC]; !ok || old.State != store.LeaseBound {
			leaseOf[l.MAC] = l
		}
	}
	events, err := s.o.Store.RecentBootEvents(ctx, 1000)
	if err != nil {
		return nil, err
	}
	lastOf := map[string]store.BootEvent{}
	for _, e := range events { // newest first
		if _, ok := lastOf[e.MAC]; !ok {
			lastOf[e.MAC] = e
		}
	}
	out := make([]wire.Host, 0, len(hs))
	for _, h := range hs {
		j := toHostJSON(h)
		for _, m := range h.MACs {
			if l, ok := leaseOf[m]; ok && j.Lease == nil {
				lj := toLeaseJSON(l, h.Name, now)
				j.Lease = &lj
			}
			if e, ok := lastOf[m]; ok && (j.LastEvent == nil || e.ID > j.LastEvent.ID) {
				ej := toBootEventJSON(e)
				j.LastEvent = &ej
			}
		}
		out = append(out, j)
	}
	return out, nil
}

func (s *Server) getHost(w http.ResponseWriter, r *http.Request) {
	h, err := s.o.Store.HostByName(r.Context(), r.PathValue("name"))
	if err != nil {
		WriteError(w, hostNotFound(err, r.PathValue("name")))
		return
	}
	out, err := s.withState(r, []store.Host{h})
	if err != nil {
		WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out[0])
}

func hostNotFound(err error, name string) error {
	if errors.Is(err, store.ErrNotFound) {
		return Errorf(http.StatusNotFound, CodeNotFound, "", "no host named %q", name)
	}
	return err
}

func (s *Server) createHost(w http.ResponseWriter, r *http.Request) {
	var in wire.HostInput
	if err := DecodeJSON(w, r, 0, &in); err != nil {
		WriteError(w, err)
		return
	}
	h, es := toHost(in)
	saved, err := s.checkOrStore(r, h, es, func(h store.Host) (store.Host, error) { return s.o.Store.CreateHost(r.Context(), h) })
	if err != nil {
		WriteError(w, err)
		return
	}
	if isTrue(r.URL.Query().Get("dry_run")) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.log.Info("host created", "host", saved.Name, "user", Caller(r).User)
	w.Header().Set("Location", "/api/v1/hosts/"+saved.Name)
	writeJSON(w, http.StatusCreated, toHostJSON(saved))
}

func (s *Server) updateHost(w http.ResponseWriter, r *http.Request) {
	var in wire.HostInput
	if err := DecodeJSON(w, r, 0, &in); err != nil {
		WriteError(w, err)
		return
	}
	cur, err := s.o.Store.HostByName(r.Context(), r.PathValue("name"))
	if err != nil {
		WriteError(w, hostNotFound(err, r.PathValue("name")))
		return
	}
	h, es := toHost(in)
	h.ID = cur.ID
	saved, err := s.checkOrStore(r, h, es, func(h store.Host) (store.Host, error) { return s.o.Store.UpdateHost(r.Context(), h) })
	if err != nil {
		WriteError(w, err)
		return
	}
	if isTrue(r.URL.Query().Get("dry_run")) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.log.Info("host updated", "host", saved.Name, "user", Caller(r).User)
	writeJSON(w, http.StatusOK, toHostJSON(saved))
}

func (s *Server) deleteHost(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.o.Store.DeleteHost(r.Context(), name); err != nil {
		WriteError(w, hostNotFound(err, name))
		return
	}
	s.log.Info("host deleted", "host", name, "user", Caller(r).User)
	w.WriteHeader(http.StatusNoContent)
}

// hostEvents is a host's boot timeline: the events of all its MACs, newest first.
func (s *Server) hostEvents(w http.ResponseWriter, r *http.Request) {
	limit, err := intParam(r, "limit", 100, 1, 1000)
	if err != nil {
		WriteError(w, err)
		return
	}
	h, err := s.o.Store.HostByName(r.Context(), r.PathValue("name"))
	if err != nil {
		WriteError(w, hostNotFound(err, r.PathValue("name")))
		return
	}
	var all []store.BootEvent
	for _, m := range h.MACs {
		es, err := s.o.Store.BootEvents(r.Context(), m, limit)
		if err != nil {
			WriteError(w, err)
			return
		}
		all = append(all, es...)
	}
	slices.SortFunc(all, func(a, b store.BootEvent) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return int(b.ID - a.ID)
	})
	out := make([]wire.BootEvent, 0, min(limit, len(all)))
	for _, e := range all[:min(limit, len(all))] {
		out = append(out, toBootEventJSON(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// hostFormat reads ?format= (default yaml).
func hostFormat(r *http.Request) (store.Format, error) {
	switch f := r.URL.Query().Get("format"); f {
	case "", "yaml", "yml":
		return store.FormatYAML, nil
	case "csv":
		return store.FormatCSV, nil
	default:
		return "", Errorf(http.StatusBadRequest, CodeBadRequest, "format", "format: %q is not yaml or csv", f)
	}
}

func (s *Server) exportHosts(w http.ResponseWriter, r *http.Request) {
	f, err := hostFormat(r)
	if err != nil {
		WriteError(w, err)
		return
	}
	var buf bytes.Buffer
	if err := s.o.Store.ExportHosts(r.Context(), &buf, f); err != nil {
		WriteError(w, err)
		return
	}
	ct := "application/yaml"
	if f == store.FormatCSV {
		ct = "text/csv"
	}
	w.Header().Set("Content-Type", ct+"; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=hosts.%s", f))
	w.Write(buf.Bytes())
}

func (s *Server) importHosts(w http.ResponseWriter, r *http.Request) {
	f, err := hostFormat(r)
	if err != nil {
		WriteError(w, err)
		return
	}
	if r.URL.Query().Get("format") == "" {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "text/csv" {
			f = store.FormatCSV
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, ImportBodyLimit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		WriteError(w, Errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "", "the host file is larger than %d bytes: split it", ImportBodyLimit))
		return
	} else if err != nil {
		WriteError(w, Errorf(http.StatusBadRequest, CodeBadRequest, "", "reading the body: %v", err))
		return
	}
	res, err := s.o.Store.ImportHosts(r.Context(), bytes.NewReader(body), f, isTrue(r.URL.Query().Get("replace")))
	if err != nil {
		var es store.Errors
		if !errors.As(err, &es) && errors.Is(err, store.ErrInvalid) {
			err = Errorf(http.StatusBadRequest, CodeBadRequest, "", "the %s file does not parse: %v", f, strings.TrimPrefix(err.Error(), "invalid: "))
		}
		WriteError(w, err)
		return
	}
	s.log.Info("hosts imported", "created", res.Created, "updated", res.Updated, "user", Caller(r).User)
	writeJSON(w, http.StatusOK, wire.ImportResult{Created: res.Created, Updated: res.Updated})
}

func isTrue(s string) bool {
	b, err := strconv.ParseBool(s)
	return err == nil && b
}

// intParam reads an integer query parameter within [lo, hi].
func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, Errorf(http.StatusBadRequest, CodeBadRequest, name, "%s: want a whole number from %d to %d", name, lo, hi)
	}
	return n, nil
}
