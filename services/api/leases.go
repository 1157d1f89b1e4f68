package api

import (
	"errors"
	"net/http"
	"net/netip"
	"time"

	"kiln.dev/kiln/services/api/wire"
	"kiln.dev/kiln/services/store"
)

func toLeaseJSON(l store.Lease, host string, now time.Time) wire.Lease {
	return wire.Lease{IP: l.IP.String(), Subnet: l.Subnet, MAC: l.MAC, Host: host, Hostname: l.Hostname, ClientID: l.ClientID,
		RelayInfo: l.RelayInfo, State: string(l.State), Active: l.Active(now), Expires: l.Expires, Updated: l.Updated}
}

func toBootEventJSON(e store.BootEvent) wire.BootEvent {
	return wire.BootEvent{ID: e.ID, MAC: e.MAC, Host: e.Host, Kind: e.Kind, Detail: e.Detail, Time: e.Time}
}

func (s *Server) listLeases(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ls, err := s.o.Store.Leases(ctx, r.URL.Query().Get("subnet"))
	if err != nil {
		WriteError(w, err)
		return
	}
	hosts, err := s.o.Store.ListHosts(ctx)
	if err != nil {
		WriteError(w, err)
		return
	}
	owner := map[string]string{}
	for _, h := range hosts {
		for _, m := range h.MACs {
			owner[m] = h.Name
		}
	}
	now := s.o.Now()
	activeOnly := isTrue(r.URL.Query().Get("active"))
	out := make([]wire.Lease, 0, len(ls))
	for _, l := range ls {
		if activeOnly && !l.Active(now) {
			continue
		}
		out = append(out, toLeaseJSON(l, owner[l.MAC], now))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteLease(w http.ResponseWriter, r *http.Request) {
	ip, err := netip.ParseAddr(r.PathValue("ip"))
	if err != nil || !ip.Is4() {
		WriteError(w, Errorf(http.StatusBadRequest, CodeInvalid, "ip", "ip: %q is not an IPv4 address", r.PathValue("ip")))
		return
	}
	if err := s.o.Store.DeleteLease(r.Context(), ip); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = Errorf(http.StatusNotFound, CodeNotFound, "", "no lease on %s", ip)
		}
		WriteError(w, err)
		return
	}
	s.log.Info("lease deleted", "ip", ip.String(), "user", Caller(r).User)
	w.WriteHeader(http.StatusNoContent)
}

// bootEvents lists boot events: of one MAC (?mac=), after an id (?after=,
// oldest first, for polling) or the newest of all (newest first).
func (s *Server) bootEvents(w http.ResponseWriter, r *http.Request) {
	limit, err := intParam(r, "limit", 100, 1, 1000)
	if err != nil {
		WriteError(w, err)
		return
	}
	after, err := intParam(r, "after", -1, 0, 1<<62)
	if err != nil {
		WriteError(w, err)
		return
	}
	q := r.URL.Query()
	var es []store.BootEvent
	switch {
	case q.Get("mac") != "" && after >= 0:
		err = Errorf(http.StatusBadRequest, CodeBadRequest, "after", "use either mac or after")
	case q.Get("mac") != "":
		es, err = s.o.Store.BootEvents(r.Context(), q.Get("mac"), limit)
	case after >= 0:
		es, err = s.o.Store.BootEventsAfter(r.Context(), int64(after), limit)
	default:
		es, err = s.o.Store.RecentBootEvents(r.Context(), limit)
	}
	if err != nil {
		WriteError(w, err)
		return
	}
	out := make([]wire.BootEvent, 0, len(es))
	for _, e := range es {
		out = append(out, toBootEventJSON(e))
	}
	writeJSON(w, http.StatusOK, out)
}
