package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"kiln.dev/kiln/services/store"
)

// registrationJSON is a machine's registration at its console
// (provisioning.diskless.register, policy approve).
type registrationJSON struct {
	MAC         string    `json:"mac"`
	Name        string    `json:"name"`
	Role        string    `json:"role,omitempty"`
	BootProfile string    `json:"boot_profile"`
	RootImage   string    `json:"root_image,omitempty"`
	Home        string    `json:"home,omitempty"`
	Client      string    `json:"client,omitempty"`
	State       string    `json:"state"` // pending or rejected
	Reason      string    `json:"reason,omitempty"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
}

// registrationDecision approves or rejects registrations in bulk.
type registrationDecision struct {
	// Registrations name each registration by its MAC or the name it asks for.
	Registrations []string `json:"registrations"`
	// Reason is shown on a rejected machine's console.
	Reason string `json:"reason,omitempty"`
}

// registrationResult is what became of one named registration.
type registrationResult struct {
	Registration string `json:"registration"`
	MAC          string `json:"mac,omitempty"`
	Name         string `json:"name,omitempty"`
	// Error is why nothing was done ("" when it was).
	Error string `json:"error,omitempty"`
}

func toRegistrationJSON(r store.Registration) registrationJSON {
	out := registrationJSON{MAC: r.MAC, Name: r.Name, Role: r.Role, BootProfile: string(r.BootProfile), RootImage: r.RootImage,
		Home: r.Home, State: r.State, Reason: r.Reason, Created: r.Created, Updated: r.Updated}
	if r.Client.IsValid() {
		out.Client = r.Client.String()
	}
	return out
}

func (s *Server) listRegistrations(w http.ResponseWriter, r *http.Request) {
	rs, err := s.o.Store.Registrations(r.Context())
	if err != nil {
		WriteError(w, err)
		return
	}
	out := make([]registrationJSON, 0, len(rs))
	for _, reg := range rs {
		out = append(out, toRegistrationJSON(reg))
	}
	writeJSON(w, http.StatusOK, out)
}

// decideRegistrations approves (approve) or rejects each named
// registration on its own: one that fails (a name taken since) is
// reported in its result and the others still go through (200 with a
// result for each).
func (s *Server) decideRegistrations(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in registrationDecision
		if err := DecodeJSON(w, r, 0, &in); err != nil {
			WriteError(w, err)
			return
		}
		if len(in.Registrations) == 0 {
			WriteError(w, Errorf(http.StatusUnprocessableEntity, CodeInvalid, "registrations", "registrations: name at least one (its MAC or the name it asks for)"))
			return
		}
		if approve && in.Reason != "" {
			WriteError(w, Errorf(http.StatusUnprocessableEntity, CodeInvalid, "reason", "reason: only a rejection carries one"))
			return
		}
		all, err := s.o.Store.Registrations(r.Context())
		if err != nil {
			WriteError(w, err)
			return
		}
		user := Caller(r).User
		results := make([]registrationResult, 0, len(in.Registrations))
		for _, ref := range in.Registrations {
			res := registrationResult{Registration: ref}
			reg, ok := findRegistration(all, ref)
			if !ok {
				res.Error = fmt.Sprintf("no registration with MAC or name %q (kiln hosts registrations lists them)", ref)
				results = append(results, res)
				continue
			}
			res.MAC, res.Name = reg.MAC, reg.Name
			ev := store.BootEvent{MAC: reg.MAC, Host: reg.Name, Kind: "register"}
			if approve {
				_, err = s.o.Store.ApproveRegistration(r.Context(), reg.MAC)
				ev.Detail = fmt.Sprintf("registration as %s approved by %s", reg.Name, user)
			} else {
				_, err = s.o.Store.RejectRegistration(r.Context(), reg.MAC, in.Reason)
				ev.Detail = fmt.Sprintf("registration as %s rejected by %s", reg.Name, user)
				if in.Reason != "" {
					ev.Detail += ": " + in.Reason
				}
			}
			if err != nil {
				res.Error = toAPIError(err).body.Message
				var fe *store.FieldError
				if errors.As(err, &fe) && fe.Field == "reason" {
					WriteError(w, err) // the same for every one: nothing was done
					return
				}
				results = append(results, res)
				continue
			}
			if err := s.o.Store.AddBootEvent(r.Context(), ev); err != nil {
				s.log.Warn("recording a registration decision", "mac", reg.MAC, "err", err)
			}
			s.log.Info(ev.Detail, "mac", reg.MAC, "user", user)
			results = append(results, res)
		}
		writeJSON(w, http.StatusOK, results)
	}
}

// findRegistration finds ref (a MAC in any notation, or the name asked for).
func findRegistration(all []store.Registration, ref string) (store.Registration, bool) {
	mac, err := store.NormalizeMAC(ref)
	for _, reg := range all {
		if err == nil && reg.MAC == mac || strings.EqualFold(reg.Name, strings.TrimSpace(ref)) {
			return reg, true
		}
	}
	return store.Registration{}, false
}
