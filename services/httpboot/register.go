package httpboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/internal/bootnonce"
)

// KindRegister is the boot event of a registration at the machine
// (submitted, refused, waiting, applied).
const KindRegister = "register"

// ErrNotEnrolled is wrapped by Registrations errors when the MAC's host is
// no longer a machine kiln enrolled by itself (an operator registered it).
var ErrNotEnrolled = errors.New("not an enrolled machine")

// NameError is a name (or role) the registrar refused; Problem is shown
// on the machine's console, which then asks again.
type NameError struct{ Problem string }

func (e *NameError) Error() string { return e.Problem }

// Registration is what a machine's console submitted, with the defaults
// the registered host gets.
type Registration struct {
	MAC, Name, Role          string
	Profile, RootImage, Home string
	Client                   netip.Addr
}

// Registrations records registrations at the machine.
type Registrations interface {
	// Register makes the enrolled host owning r.MAC the host r describes
	// at once (policy open).
	Register(ctx context.Context, r Registration) error
	// RequestRegistration records r for an operator to approve.
	RequestRegistration(ctx context.Context, r Registration) error
	// RegistrationState returns mac's pending registration: state ""
	// (none), "pending" or "rejected" with the operator's reason, and the
	// name asked for.
	RegistrationState(ctx context.Context, mac string) (state, name, reason string, err error)
}

// RegisterOptions configures registration at the machine
// (provisioning.diskless.register).
type RegisterOptions struct {
	// Store records registrations; nil: registration is off and enrolled
	// machines boot their profile's script as before.
	Store Registrations
	// Key mints the tickets binding a form to its machine and address.
	Key *bootnonce.Key
	// Policy is config.RegisterOpen or config.RegisterApprove.
	Policy string
	// Roles are offered in a menu at the machine; empty: Role for all.
	Roles []string
	Role  string
	// Profile, RootImage and Home are given to every registered host.
	Profile, RootImage, Home string
	// Retry is how often a waiting machine asks again.
	Retry time.Duration
	// Limit bounds the names a source may submit (a burst of 5, then one
	// per 10 s by default): each is a database write.
	Limit EventLimit
}

// RegisterOptionsFromConfig maps provisioning.diskless.register.
func RegisterOptionsFromConfig(r config.Registration, store Registrations, key *bootnonce.Key) RegisterOptions {
	if !r.Enabled {
		return RegisterOptions{}
	}
	return RegisterOptions{Store: store, Key: key, Policy: r.RegisterPolicy(), Roles: r.Roles, Role: r.Role,
		Profile: r.Profile(), RootImage: r.RootImage, Home: r.Home, Retry: r.RetryEvery()}
}

func (o RegisterOptions) enabled() bool { return o.Store != nil && o.Key != nil }

// registerData fills the registration templates.
type registerData struct {
	MAC, MACDash, Base string
	Ticket             string
	Roles              []string
	// Notes are shown above the form (why it is asked again).
	Notes []string
	// Name is the name waiting for approval; Retry its poll period in s.
	Name  string
	Retry int
}

// RenderRegisterForm renders the form asking an unknown machine's console
// for its name (and room/role), notes (why it asks again) first.
func RenderRegisterForm(mac, base, ticket string, roles, notes []string) ([]byte, error) {
	for i := range notes {
		notes[i] = safe(notes[i])
	}
	return execute("register", registerData{MAC: mac, MACDash: strings.ReplaceAll(mac, ":", "-"), Base: base,
		Ticket: ticket, Roles: roles, Notes: notes})
}

// RenderRegisterWait renders the script of a machine whose registration as
// name waits for approval: it asks again every retry.
func RenderRegisterWait(mac, base, ticket, name string, retry time.Duration) ([]byte, error) {
	return execute("register-wait", registerData{MAC: mac, MACDash: strings.ReplaceAll(mac, ":", "-"), Base: base,
		Ticket: ticket, Name: safe(name), Retry: max(1, int(retry/time.Second))})
}

// serveRegisterForm answers an enrolled machine's script request (its
// credential and address already checked) with the registration form.
func (s *Server) serveRegisterForm(ctx context.Context, w http.ResponseWriter, r *http.Request, ev Event, notes ...string) {
	hw, _ := net.ParseMAC(ev.MAC)
	ticket := s.opts.Register.Key.RegistrationTicket(hw, ev.Client, s.opts.Now())
	if ticket == "" {
		ev.Detail = "registration needs an IPv4 client"
		s.report(ctx, ev)
		writeScript(w, RenderDenied("kiln registers machines over IPv4 only"))
		return
	}
	b, err := RenderRegisterForm(ev.MAC, s.base(r), ticket, s.opts.Register.Roles, notes)
	if err != nil {
		s.log.Error("rendering the registration form", "err", err)
		writeScript(w, RenderDenied("kiln could not render its registration form"))
		return
	}
	ev.Kind, ev.Detail = KindRegister, "registration form served"
	if len(notes) > 0 {
		ev.Detail += ": " + strings.Join(notes, "; ")
	}
	s.report(ctx, ev)
	writeScript(w, b)
}

// serveRegister answers GET /boot/<mac>/register?ticket=…[&name=…&role=…]:
// a submitted name (name set) or a waiting machine asking again.
func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request, rawMAC string) {
	ctx := r.Context()
	ev := Event{Time: s.opts.Now(), Client: clientAddr(r), Kind: KindDenied}
	deny := func(console, detail string) {
		ev.Kind, ev.Detail = KindDenied, detail
		level := slog.LevelInfo
		if !s.report(ctx, ev) {
			level = slog.LevelDebug
		}
		s.log.Log(ctx, level, "registration refused", "client", ev.Client, "mac", ev.MAC, "reason", detail)
		writeScript(w, RenderDenied(console))
	}
	if !s.opts.Register.enabled() {
		deny("this appliance does not register machines at their console (provisioning.diskless.register)", "registration is off")
		return
	}
	mac, ok := CanonicalMAC(rawMAC)
	if !ok {
		deny("this URL does not name a MAC address", "malformed MAC in registration URL")
		return
	}
	ev.MAC = mac
	hw, _ := net.ParseMAC(mac)
	q := r.URL.Query()
	if err := s.opts.Register.Key.CheckRegistrationTicket(q.Get("ticket"), hw, ev.Client, ev.Time); err != nil {
		msg := "no registration for " + mac + ": this form was handed out for another machine or address"
		if errors.Is(err, bootnonce.ErrExpired) {
			msg = "no registration for " + mac + ": this form has expired; reboot the machine to try again"
		}
		deny(msg, "registration ticket refused: "+err.Error())
		return
	}
	h, ok := s.lookupHost(ctx, mac, "no registration for "+mac+": kiln no longer knows this machine; reboot it to try again", deny)
	if !ok {
		return
	}
	ev.Host = h.Name
	if ok, err := s.requesterIs(ctx, ev.Client, mac, h); err != nil {
		s.log.Error("looking up the requester's lease", "client", ev.Client, "err", err)
		deny("kiln cannot read its machine database; try again later", "machine database error")
		return
	} else if !ok {
		deny("no registration for "+mac+" from "+ev.Client.String()+": only the machine itself may register, from the address kiln leased it",
			"requested from "+ev.Client.String()+", not the MAC's lease or reservation")
		return
	}
	if !h.Enrolled {
		// Registered meanwhile (approved, or by an operator): boot it.
		s.bootHost(ctx, w, r, h, ev, deny)
		return
	}
	name, role := strings.TrimSpace(q.Get("name")), strings.TrimSpace(q.Get("role"))
	if name == "" && !q.Has("name") {
		s.registrationState(ctx, w, r, ev, deny)
		return
	}
	if ok, _ := s.regLimit.allow(ev.Client, ev.Time); !ok {
		s.serveRegisterForm(ctx, w, r, ev, "too many attempts from "+ev.Client.String()+"; wait a few seconds and try again")
		return
	}
	o := s.opts.Register
	if len(o.Roles) > 0 {
		if !slices.Contains(o.Roles, role) {
			s.serveRegisterForm(ctx, w, r, ev, fmt.Sprintf("%q is not a room/role of this site; choose one from the menu", safe(role)))
			return
		}
	} else {
		role = o.Role
	}
	var err error
	reg := Registration{MAC: mac, Name: name, Role: role, Profile: o.Profile, RootImage: o.RootImage, Home: o.Home, Client: ev.Client}
	var nameErr *NameError
	if o.Policy == config.RegisterOpen {
		err = o.Store.Register(ctx, reg)
	} else {
		err = o.Store.RequestRegistration(ctx, reg)
	}
	switch {
	case errors.As(err, &nameErr):
		ev.Kind, ev.Detail = KindRegister, fmt.Sprintf("name %q refused: %s", safe(name), nameErr.Problem)
		s.report(ctx, ev)
		s.serveRegisterForm(ctx, w, r, Event{Time: ev.Time, Client: ev.Client, MAC: mac, Host: h.Name}, nameErr.Problem)
		return
	case errors.Is(err, ErrNotEnrolled):
		if h, err = s.hosts.HostByMAC(ctx, mac); err == nil {
			s.bootHost(ctx, w, r, h, ev, deny)
			return
		}
		deny("kiln cannot read its machine database; try again later", "machine database error")
		return
	case err != nil:
		s.log.Error("storing a registration", "mac", mac, "name", name, "err", err)
		deny("kiln could not store this registration; try again later", "registration store error")
		return
	}
	if o.Policy == config.RegisterOpen {
		ev.Kind, ev.Detail = KindRegister, fmt.Sprintf("registered as %s (role %q)", name, role)
		s.report(ctx, ev)
		s.log.Info("machine registered", "mac", mac, "host", name, "role", role, "client", ev.Client)
		if h, err = s.hosts.HostByMAC(ctx, mac); err != nil {
			deny("kiln cannot read its machine database; try again later", "machine database error")
			return
		}
		ev.Host = h.Name
		s.bootHost(ctx, w, r, h, ev, deny)
		return
	}
	ev.Kind, ev.Detail = KindRegister, fmt.Sprintf("registration as %s (role %q) waits for approval", name, role)
	s.report(ctx, ev)
	s.log.Info("registration waits for approval", "mac", mac, "name", name, "role", role, "client", ev.Client)
	s.serveWait(w, r, ev, name)
}

// registrationState answers a waiting machine's poll.
func (s *Server) registrationState(ctx context.Context, w http.ResponseWriter, r *http.Request, ev Event, deny func(console, detail string)) {
	state, name, reason, err := s.opts.Register.Store.RegistrationState(ctx, ev.MAC)
	if err != nil {
		s.log.Error("reading a registration", "mac", ev.MAC, "err", err)
		deny("kiln cannot read its machine database; try again later", "machine database error")
		return
	}
	switch state {
	case "pending":
		s.serveWait(w, r, ev, name) // no event: a waiting hall polls every few seconds
	case "rejected":
		note := "the registration as " + name + " was rejected by an operator"
		if reason != "" {
			note += ": " + reason
		}
		s.serveRegisterForm(ctx, w, r, ev, note)
	default:
		s.serveRegisterForm(ctx, w, r, ev)
	}
}

func (s *Server) serveWait(w http.ResponseWriter, r *http.Request, ev Event, name string) {
	hw, _ := net.ParseMAC(ev.MAC)
	ticket := s.opts.Register.Key.RegistrationTicket(hw, ev.Client, s.opts.Now())
	b, err := RenderRegisterWait(ev.MAC, s.base(r), ticket, name, s.opts.Register.Retry)
	if err != nil {
		s.log.Error("rendering the approval wait", "err", err)
		b = RenderDenied("kiln could not render its registration script")
	}
	writeScript(w, b)
}
