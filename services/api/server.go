package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"kiln.dev/kiln/init/supervisor/supervisorapi"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/orchestrator"
)

// Scope is what a route needs from its caller.
type Scope string

// Scopes, weakest first. Read, write and admin match store.Role.
const (
	ScopePublic Scope = "public" // anyone, no credentials
	ScopeRead   Scope = "read"
	ScopeWrite  Scope = "write"
	ScopeAdmin  Scope = "admin"
)

func (s Scope) rank() int {
	if s == ScopePublic {
		return 0
	}
	return store.Role(s).Rank()
}

// Supervisor is the part of the supervisor's control socket the API uses
// (*supervisorapi.Client satisfies it).
type Supervisor interface {
	Status(ctx context.Context) (supervisorapi.Status, error)
	Logs(ctx context.Context, name string, since uint64) ([]supervisorapi.Line, error)
	FollowLogs(ctx context.Context, name string, since uint64, fn func(supervisorapi.Line) error) error
}

// Restarter is the optional ability to restart a service.
type Restarter interface {
	Restart(ctx context.Context, name string) error
}

// Banner blocks an address at the firewall for a while. The API calls it
// after repeated failed logins; a nil Banner only locks the address out of
// the API itself.
type Banner interface {
	Ban(addr netip.Addr, d time.Duration)
}

// Options configure a Server. Store is required.
type Options struct {
	Store *store.Store
	// Supervisor answers the service routes; nil makes them 503.
	Supervisor Supervisor
	// Config is the appliance config (api.trust_lan and friends, and what the
	// settings page shows).
	Config config.Config
	// StateDir holds api/initial-password (see EnsureInitialPassword).
	StateDir string
	// Banner receives repeated login failures; nil is fine.
	Banner Banner
	// Fingerprint is the served certificate's SHA-256, shown on the settings page.
	Fingerprint string
	// Version is kiln's version, shown in the UI.
	Version string
	Logger  *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// BcryptCost defaults to bcrypt.DefaultCost; tests use bcrypt.MinCost.
	BcryptCost int
	// Vetting runs vetting (the /api/v1/vetting routes); nil makes them 503.
	Vetting *orchestrator.Orchestrator
	// PollInterval is how often the event streams' shared poller looks for
	// changes; 0 means 1s.
	PollInterval time.Duration
}

// Route is one entry of the router: the method and path (a net/http
// pattern), who may call it, and what it takes and returns (for OpenAPI).
type Route struct {
	Method string
	Path   string
	Scope  Scope
	// Self lets a browser session of any role call a route whose Scope it
	// lacks, for its own account only (the handler enforces "own"): changing
	// one's password, making and revoking one's own tokens.
	Self bool
	// Credentials marks a route that hands out or changes credentials
	// (passwords, accounts, API tokens, a held host's SSH key or shell): only
	// an identified user (session or API token) may call it, never an
	// anonymous caller of api.trusted_networks, whatever api.trusted_role says.
	Credentials bool
	Summary     string
	// Query lists query parameters as "name: description".
	Query []string
	// Request and Response are example values whose types describe the JSON
	// bodies; nil means none. RawRequest/RawResponse name a non-JSON media type.
	Request     any
	Response    any
	RawRequest  string
	RawResponse string
	// Status is the success status (default 200).
	Status int

	handler http.Handler
}

// Mutating reports whether the route changes state (anything but GET/HEAD).
func (r Route) Mutating() bool { return r.Method != http.MethodGet && r.Method != http.MethodHead }

// Pattern is the net/http pattern, e.g. "GET /api/v1/hosts/{name}".
func (r Route) Pattern() string { return r.Method + " " + r.Path }

// Server is the operator API and web UI. Create it with New.
type Server struct {
	o      Options
	log    *slog.Logger
	mux    *http.ServeMux
	guard  *guard
	closed chan struct{} // closed by Close: ends event streams
	// dummyHash is compared against when a user does not exist, so a wrong
	// name costs as long as a wrong password.
	dummyHash []byte

	// feed polls for changes once for every event stream; slots caps the
	// streams per user.
	feed  *changeFeed
	slots streamSlots
	// marks reads the store's change marks (tests count the calls).
	marks func(context.Context) (store.ChangeMarks, error)

	// once closes closed.
	once sync.Once
	// resetMu serializes applying a console password reset.
	resetMu sync.Mutex

	// mu guards routes.
	mu     sync.Mutex
	routes []Route
}

// New builds the server and, on first start (no accounts yet), creates the
// admin account from the initial password (see EnsureInitialPassword).
func New(ctx context.Context, o Options) (*Server, error) {
	if o.Store == nil {
		return nil, errors.New("api: Options.Store is nil")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.BcryptCost == 0 {
		o.BcryptCost = bcrypt.DefaultCost
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	s := &Server{
		o:      o,
		log:    o.Logger,
		mux:    http.NewServeMux(),
		guard:  newGuard(o.Banner, o.Logger),
		closed: make(chan struct{}),
	}
	s.marks = o.Store.Marks
	s.feed = newChangeFeed(o.PollInterval, s.closed, s.pollChanges)
	var err error
	if s.dummyHash, err = bcrypt.GenerateFromPassword([]byte("not a password"), o.BcryptCost); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if err := s.bootstrap(ctx); err != nil {
		return nil, err
	}
	for _, r := range append(s.apiRoutes(), s.vetRoutes()...) {
		s.add(r)
	}
	s.mux.HandleFunc("/api/", s.notFound)
	s.mountUI()
	return s, nil
}

// Mount adds a route to the API from outside the package (e.g. the OTA
// upload): pattern is "METHOD /api/…" as net/http spells it (or "GET
// /metrics", Prometheus' conventional path) and scope says who may call it.
// The handler gets the same authentication, CSRF checks and security headers
// as every other route, reads its own body (no size limit is imposed) and
// should answer errors with WriteError. Mount it before serving.
func (s *Server) Mount(pattern string, scope Scope, h http.Handler) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok || method == "" || !strings.HasPrefix(path, "/api/") && path != "/metrics" {
		panic(fmt.Sprintf("api: Mount(%q): want \"METHOD /api/…\" or \"GET /metrics\"", pattern))
	}
	s.add(Route{Method: method, Path: path, Scope: scope, handler: h})
}

// MountRoute is Mount for a route described in full: its Credentials
// flag, summary and body types are kept (Mount keeps only the scope).
func (s *Server) MountRoute(r Route, h http.Handler) {
	if !strings.HasPrefix(r.Path, "/api/") {
		panic(fmt.Sprintf("api: MountRoute(%s %s): want a path below /api/", r.Method, r.Path))
	}
	r.handler = h
	s.add(r)
}

// add registers r on the mux behind the authentication wrapper.
func (s *Server) add(r Route) {
	if r.Scope.rank() == 0 && r.Scope != ScopePublic {
		panic(fmt.Sprintf("api: route %s has no scope", r.Pattern()))
	}
	s.mu.Lock()
	s.routes = append(s.routes, r)
	s.mu.Unlock()
	s.mux.Handle(r.Pattern(), s.wrap(r))
}

// Routes returns every API route (not the UI's static files), in
// registration order.
func (s *Server) Routes() []Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Route(nil), s.routes...)
}

// Handler serves the API under /api/ and the web UI under /ui/ (/ redirects there).
func (s *Server) Handler() http.Handler { return s.mux }

// Close ends every event and log stream, so an http.Server's Shutdown does
// not wait for them (register it with RegisterOnShutdown).
func (s *Server) Close() { s.once.Do(func() { close(s.closed) }) }

// notFound answers /api/ paths no route matched: 405 when the path exists
// with other methods, 404 otherwise.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pat := s.mux.Handler(probe); pat != "" && pat != "/api/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		WriteError(w, Errorf(http.StatusMethodNotAllowed, CodeMethod, "", "%s is not allowed on %s (use %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	WriteError(w, Errorf(http.StatusNotFound, CodeNotFound, "", "no API route %s %s (see /api/v1/openapi.json)", r.Method, r.URL.Path))
}

// securityHeaders are set on every response.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
}

// principalKey carries the caller in a request's context.
type principalKey struct{}

// Principal is who is calling: a user through a session or a token, or an
// anonymous caller from a trusted network (api.trust_lan).
type Principal struct {
	User   string
	UserID int64
	Scope  store.Role
	Via    string // "session", "token" or "trusted"
	// Session is the session's IDHash; TokenID the token's id.
	Session string
	TokenID int64
	csrf    string
}

// Caller returns the authenticated caller of a request served by a route,
// or nil for a public route called without credentials.
func Caller(r *http.Request) *Principal {
	p, _ := r.Context().Value(principalKey{}).(*Principal)
	return p
}

// wrap authenticates, authorizes and CSRF-checks every call of r.
func (s *Server) wrap(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		p, err := s.authenticate(r)
		if err != nil {
			WriteError(w, err)
			return
		}
		if err := authorize(rt, p, r); err != nil {
			WriteError(w, err)
			return
		}
		if p != nil {
			r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
		}
		rt.handler.ServeHTTP(w, r)
	})
}

// authorize checks scope, CSRF and origin of a call.
func authorize(rt Route, p *Principal, r *http.Request) error {
	if rt.Scope != ScopePublic {
		if p == nil {
			return Errorf(http.StatusUnauthorized, CodeUnauthenticated, "", "log in first (POST /api/v1/session) or send an API token as Authorization: Bearer")
		}
		if rt.Credentials && p.Via == viaTrusted {
			return Errorf(http.StatusUnauthorized, CodeUnauthenticated, "", "%s %s hands out or changes credentials, which api.trust_lan never allows without logging in: log in (POST /api/v1/session) or send an API token", rt.Method, rt.Path)
		}
		if p.Scope.Rank() < rt.Scope.rank() && !(rt.Self && p.Via == viaSession) {
			return Errorf(http.StatusForbidden, CodeForbidden, "", "%s %s needs %s access; %s has %s", rt.Method, rt.Path, rt.Scope, p.User, p.Scope)
		}
	}
	if !rt.Mutating() || p == nil || p.Via == viaToken {
		return nil
	}
	// Browsers: refuse other origins, and want the CSRF token (a custom
	// header cannot be sent cross-site without a CORS preflight we never allow).
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return Errorf(http.StatusForbidden, CodeCSRF, "", "cross-origin request from %s refused", o)
		}
	}
	got := r.Header.Get("X-CSRF-Token")
	switch {
	case got == "":
		return Errorf(http.StatusForbidden, CodeCSRF, "", "missing X-CSRF-Token header (the csrf_token from GET /api/v1/session)")
	case p.Via == viaSession && subtle.ConstantTimeCompare([]byte(got), []byte(p.csrf)) != 1:
		return Errorf(http.StatusForbidden, CodeCSRF, "", "wrong X-CSRF-Token (reload the page)")
	}
	return nil
}
