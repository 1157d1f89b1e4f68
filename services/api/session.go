package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/bcrypt"

	"kiln.dev/kiln/services/api/wire"
	"kiln.dev/kiln/services/store"
)

type loginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

type sessionJSON struct {
	User string `json:"user"`
	Role string `json:"role"`
	// Via is session, token or trusted.
	Via string `json:"via"`
	// CSRFToken goes into the X-CSRF-Token header of every mutating request
	// made with the session cookie.
	CSRFToken string     `json:"csrf_token,omitempty"`
	Expires   *time.Time `json:"expires,omitempty"`
	// InitialPassword is true while the account still uses the first-boot
	// password: the UI asks to change it.
	InitialPassword bool `json:"initial_password"`
}

// login checks a user name and password and starts a session (cookie).
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := s.o.Now()
	addr := remoteAddr(r)
	if wait := s.guard.addrLocked(addr, now); wait > 0 {
		WriteError(w, tooMany(wait, "too many failed logins from %s: try again in %v", addr, roundWait(wait)))
		return
	}
	var req loginRequest
	if err := DecodeJSON(w, r, 4<<10, &req); err != nil {
		WriteError(w, err)
		return
	}
	if strings.TrimSpace(req.User) == "" {
		WriteError(w, Errorf(http.StatusUnprocessableEntity, CodeInvalid, "user", "user: missing (the first account is %q)", AdminUser))
		return
	}
	if wait := s.guard.nameLocked(req.User, now); wait > 0 {
		// Refused before the password is checked, so a guesser spread over
		// many addresses gains nothing by trying meanwhile.
		WriteError(w, tooMany(wait, "too many failed logins for %q: try again in %v (or reset the password from the console)", nameKey(req.User), roundWait(wait)))
		return
	}
	if err := s.applyPendingReset(ctx); err != nil {
		s.log.Error("applying a password reset", "err", err)
	}
	u, err := s.o.Store.UserByName(ctx, req.User)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		WriteError(w, err)
		return
	}
	hash := s.dummyHash
	if err == nil && !u.Disabled {
		hash = []byte(u.PasswordHash)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(req.Password)) != nil || err != nil || u.Disabled {
		s.guard.fail(addr, req.User, err == nil, now, "wrong user name or password")
		WriteError(w, Errorf(http.StatusUnauthorized, CodeBadCredentials, "", "wrong user name or password"))
		return
	}
	s.guard.succeed(addr, u.Name)
	if _, err := s.o.Store.PruneSessions(ctx, now); err != nil {
		s.log.Warn("pruning expired sessions", "err", err)
	}
	id, csrf := randomString(32), randomString(24)
	expires := now.Add(time.Duration(s.settings(ctx).SessionHours) * time.Hour).UTC().Truncate(time.Second)
	if err := s.o.Store.CreateSession(ctx, store.Session{IDHash: hashSecret(id), UserID: u.ID, CSRF: csrf,
		Remote: addr.String(), Created: now, Expires: expires}); err != nil {
		WriteError(w, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/", Expires: expires,
		MaxAge: int(expires.Sub(now).Seconds()), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	s.log.Info("login", "user", u.Name, "remote", addr.String())
	writeJSON(w, http.StatusCreated, sessionJSON{User: u.Name, Role: string(u.Role), Via: viaSession, CSRFToken: csrf,
		Expires: &expires, InitialPassword: s.initialPasswordInUse(u.Name)})
}

// session tells the caller who they are (and the browser its CSRF token).
func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	p := Caller(r)
	out := sessionJSON{User: p.User, Role: string(p.Scope), Via: p.Via, CSRFToken: p.csrf, InitialPassword: s.initialPasswordInUse(p.User)}
	if p.Via == viaSession {
		if se, _, err := s.o.Store.SessionByHash(r.Context(), p.Session); err == nil {
			out.Expires = &se.Expires
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// logout ends the caller's session.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if p := Caller(r); p.Via == viaSession {
		if err := s.o.Store.DeleteSession(r.Context(), p.Session); err != nil {
			WriteError(w, err)
			return
		}
		s.log.Info("logout", "user", p.User)
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

// info is what the login page shows before anyone logs in.
func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	st := s.settings(r.Context())
	writeJSON(w, http.StatusOK, wire.Info{SiteName: st.SiteName, LoginBanner: st.LoginBanner, Version: s.o.Version})
}

// Settings.

type settingsJSON struct {
	// SiteName is shown in the UI's header and the login page.
	SiteName string `json:"site_name"`
	// SessionHours is how long a browser session lasts (1-720).
	SessionHours int `json:"session_hours"`
	// LoginBanner is shown on the login page (e.g. who to ask for an account).
	LoginBanner string `json:"login_banner"`
}

type settingsResponse struct {
	settingsJSON
	// Appliance is read-only: it comes from the config file.
	Appliance applianceJSON `json:"appliance"`
}

type applianceJSON struct {
	Hostname        string   `json:"hostname"`
	HTTPSPort       int      `json:"https_port"`
	HTTPPort        int      `json:"http_port"`
	Certificate     string   `json:"certificate"` // "self-signed" or "operator"
	Fingerprint     string   `json:"fingerprint,omitempty"`
	TrustLAN        bool     `json:"trust_lan"`
	TrustedNetworks []string `json:"trusted_networks,omitempty"`
	TrustedRole     string   `json:"trusted_role,omitempty"`
	Version         string   `json:"version,omitempty"`
}

type settingsUpdate struct {
	SiteName     *string `json:"site_name"`
	SessionHours *int    `json:"session_hours"`
	LoginBanner  *string `json:"login_banner"`
}

var defaultSettings = settingsJSON{SiteName: "kiln", SessionHours: 12}

// settings returns the stored settings over the defaults.
func (s *Server) settings(ctx context.Context) settingsJSON {
	out := defaultSettings
	kv, err := s.o.Store.Settings(ctx)
	if err != nil {
		s.log.Error("reading settings", "err", err)
		return out
	}
	if v, ok := kv["site_name"]; ok {
		out.SiteName = v
	}
	if v, err := strconv.Atoi(kv["session_hours"]); err == nil && v > 0 {
		out.SessionHours = v
	}
	out.LoginBanner = kv["login_banner"]
	return out
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request) {
	c := s.o.Config
	a := applianceJSON{Hostname: c.Hostname, HTTPSPort: c.Management.HTTPSPort, HTTPPort: c.Management.HTTPPort,
		Certificate: "self-signed", Fingerprint: s.o.Fingerprint, TrustLAN: c.API.TrustLAN, Version: s.o.Version}
	if c.API.TLSCert != "" {
		a.Certificate = "operator"
	}
	if c.API.TrustLAN {
		a.TrustedNetworks, a.TrustedRole = c.API.TrustedNetworks, c.API.TrustedRole
	}
	writeJSON(w, http.StatusOK, settingsResponse{s.settings(r.Context()), a})
}

func (s *Server) putSettings(w http.ResponseWriter, r *http.Request) {
	var in settingsUpdate
	if err := DecodeJSON(w, r, 0, &in); err != nil {
		WriteError(w, err)
		return
	}
	kv := map[string]string{}
	var problems []ErrorDetail
	bad := func(field, msg string) {
		problems = append(problems, ErrorDetail{Code: CodeInvalid, Field: field, Message: field + ": " + msg})
	}
	if in.SiteName != nil {
		v := strings.TrimSpace(*in.SiteName)
		switch {
		case len(v) > 64:
			bad("site_name", "use at most 64 characters")
		case strings.IndexFunc(v, unicode.IsControl) >= 0:
			bad("site_name", "must not contain control characters")
		}
		kv["site_name"] = v
	}
	if in.SessionHours != nil {
		if *in.SessionHours < 1 || *in.SessionHours > 720 {
			bad("session_hours", "use 1 to 720 hours")
		}
		kv["session_hours"] = strconv.Itoa(*in.SessionHours)
	}
	if in.LoginBanner != nil {
		if len(*in.LoginBanner) > 2000 {
			bad("login_banner", "use at most 2000 characters")
		}
		kv["login_banner"] = strings.TrimSpace(*in.LoginBanner)
	}
	if len(problems) > 0 {
		top := problems[0]
		if len(problems) > 1 {
			top.Details = problems
		}
		WriteError(w, &apiError{http.StatusUnprocessableEntity, top})
		return
	}
	if err := s.o.Store.PutSettings(r.Context(), kv); err != nil {
		WriteError(w, err)
		return
	}
	s.log.Info("settings changed", "user", Caller(r).User)
	s.getSettings(w, r)
}
