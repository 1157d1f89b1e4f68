package api

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/crypto/bcrypt"

	"kiln.dev/kiln/services/api/wire"
	"kiln.dev/kiln/services/store"
)

type userJSON struct {
	Name            string    `json:"name"`
	Role            string    `json:"role"`
	Disabled        bool      `json:"disabled"`
	Created         time.Time `json:"created"`
	PasswordChanged time.Time `json:"password_changed"`
}

type newUser struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Password string `json:"password"`
}

type userUpdate struct {
	Role     *string `json:"role"`
	Disabled *bool   `json:"disabled"`
}

type passwordChange struct {
	// CurrentPassword is required when changing one's own password.
	CurrentPassword string `json:"current_password,omitempty"`
	Password        string `json:"password"`
}

func toUserJSON(u store.User) userJSON {
	return userJSON{Name: u.Name, Role: string(u.Role), Disabled: u.Disabled, Created: u.Created, PasswordChanged: u.PasswordChanged}
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func toTokenJSON(t store.APIToken, now time.Time) wire.Token {
	return wire.Token{ID: t.ID, User: t.User, Name: t.Name, Scope: string(t.Scope), Prefix: t.Prefix, Created: t.Created,
		Expires: optTime(t.Expires), LastUsed: optTime(t.LastUsed), Revoked: optTime(t.Revoked), Active: t.Active(now)}
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	us, err := s.o.Store.ListUsers(r.Context())
	if err != nil {
		WriteError(w, err)
		return
	}
	out := make([]userJSON, 0, len(us))
	for _, u := range us {
		out = append(out, toUserJSON(u))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	var in newUser
	if err := DecodeJSON(w, r, 0, &in); err != nil {
		WriteError(w, err)
		return
	}
	hash, err := s.hashPassword(in.Password, "password")
	if err != nil {
		WriteError(w, err)
		return
	}
	u, err := s.o.Store.CreateUser(r.Context(), store.User{Name: in.Name, Role: store.Role(in.Role), PasswordHash: hash})
	if err != nil {
		WriteError(w, err)
		return
	}
	s.log.Info("user created", "name", u.Name, "role", u.Role, "by", Caller(r).User)
	writeJSON(w, http.StatusCreated, toUserJSON(u))
}

func (s *Server) updateUser(w http.ResponseWriter, r *http.Request) {
	var in userUpdate
	if err := DecodeJSON(w, r, 0, &in); err != nil {
		WriteError(w, err)
		return
	}
	cur, err := s.o.Store.UserByName(r.Context(), r.PathValue("name"))
	if err != nil {
		WriteError(w, err)
		return
	}
	if in.Role != nil {
		cur.Role = store.Role(*in.Role)
	}
	if in.Disabled != nil {
		cur.Disabled = *in.Disabled
	}
	u, err := s.o.Store.UpdateUser(r.Context(), cur)
	if err != nil {
		WriteError(w, err)
		return
	}
	s.log.Info("user changed", "name", u.Name, "role", u.Role, "disabled", u.Disabled, "by", Caller(r).User)
	writeJSON(w, http.StatusOK, toUserJSON(u))
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.o.Store.DeleteUser(r.Context(), name); err != nil {
		WriteError(w, err)
		return
	}
	s.forgetInitialPassword(name)
	s.log.Info("user deleted", "name", name, "by", Caller(r).User)
	w.WriteHeader(http.StatusNoContent)
}

// setPassword changes a password: one's own (with the current password) or,
// for an admin, anyone's.
func (s *Server) setPassword(w http.ResponseWriter, r *http.Request) {
	p := Caller(r)
	var in passwordChange
	if err := DecodeJSON(w, r, 4<<10, &in); err != nil {
		WriteError(w, err)
		return
	}
	u, err := s.o.Store.UserByName(r.Context(), r.PathValue("name"))
	if err != nil {
		WriteError(w, err)
		return
	}
	self := u.ID == p.UserID
	if !self && p.Scope != store.RoleAdmin {
		WriteError(w, Errorf(http.StatusForbidden, CodeForbidden, "", "only an admin may change another account's password"))
		return
	}
	if self && bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(in.CurrentPassword)) != nil {
		s.guard.fail(remoteAddr(r), u.Name, true, s.o.Now(), "wrong current password")
		WriteError(w, Errorf(http.StatusUnprocessableEntity, CodeInvalid, "current_password", "current_password: wrong password"))
		return
	}
	if subtle.ConstantTimeCompare([]byte(in.Password), []byte(in.CurrentPassword)) == 1 {
		WriteError(w, Errorf(http.StatusUnprocessableEntity, CodeInvalid, "password", "password: choose a password different from the current one"))
		return
	}
	hash, err := s.hashPassword(in.Password, "password")
	if err != nil {
		WriteError(w, err)
		return
	}
	keep := ""
	if self {
		keep = p.Session
	}
	if err := s.o.Store.SetPassword(r.Context(), u.Name, hash, keep); err != nil {
		WriteError(w, err)
		return
	}
	s.forgetInitialPassword(u.Name)
	s.log.Info("password changed", "name", u.Name, "by", p.User)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	p := Caller(r)
	var owner int64
	if p.Scope != store.RoleAdmin {
		owner = p.UserID
		if owner == 0 { // a trusted network has no account and no tokens
			writeJSON(w, http.StatusOK, []wire.Token{})
			return
		}
	}
	ts, err := s.o.Store.ListTokens(r.Context(), owner)
	if err != nil {
		WriteError(w, err)
		return
	}
	now := s.o.Now()
	out := make([]wire.Token, 0, len(ts))
	for _, t := range ts {
		out = append(out, toTokenJSON(t, now))
	}
	writeJSON(w, http.StatusOK, out)
}

// createToken makes a token for the caller's own account, with at most the
// caller's role.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	p := Caller(r)
	if p.UserID == 0 {
		WriteError(w, Errorf(http.StatusForbidden, CodeForbidden, "", "log in with an account to make tokens"))
		return
	}
	var in wire.NewToken
	if err := DecodeJSON(w, r, 0, &in); err != nil {
		WriteError(w, err)
		return
	}
	scope := store.Role(in.Scope)
	if scope == "" {
		scope = p.Scope
	}
	if scope.Rank() > p.Scope.Rank() {
		WriteError(w, Errorf(http.StatusUnprocessableEntity, CodeInvalid, "scope", "scope: %s cannot make a %s token (at most %s)", p.User, scope, p.Scope))
		return
	}
	if in.ExpiresInDays < 0 || in.ExpiresInDays > 3650 {
		WriteError(w, Errorf(http.StatusUnprocessableEntity, CodeInvalid, "expires_in_days", "expires_in_days: use 0 (never) to 3650"))
		return
	}
	secret := TokenPrefix + randomString(32)
	now := s.o.Now()
	t := store.APIToken{UserID: p.UserID, Name: in.Name, Scope: scope, SecretHash: hashSecret(secret), Prefix: secret[:len(TokenPrefix)+6]}
	if in.ExpiresInDays > 0 {
		t.Expires = now.Add(time.Duration(in.ExpiresInDays) * 24 * time.Hour)
	}
	t, err := s.o.Store.CreateToken(r.Context(), t)
	if err != nil {
		WriteError(w, err)
		return
	}
	s.log.Info("API token created", "id", t.ID, "name", t.Name, "scope", t.Scope, "user", p.User)
	writeJSON(w, http.StatusCreated, wire.CreatedToken{Token: toTokenJSON(t, now), Secret: secret})
}

// revokeToken revokes one of the caller's tokens (an admin: anyone's).
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	p := Caller(r)
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		WriteError(w, Errorf(http.StatusBadRequest, CodeBadRequest, "id", "id: want the token's number"))
		return
	}
	t, err := s.o.Store.TokenByID(r.Context(), id)
	if err == nil && t.UserID != p.UserID && p.Scope != store.RoleAdmin {
		err = store.ErrNotFound // do not reveal other accounts' tokens
	}
	if errors.Is(err, store.ErrNotFound) {
		WriteError(w, Errorf(http.StatusNotFound, CodeNotFound, "", "no token %d", id))
		return
	} else if err != nil {
		WriteError(w, err)
		return
	}
	if err := s.o.Store.RevokeToken(r.Context(), id, s.o.Now()); err != nil {
		WriteError(w, err)
		return
	}
	s.log.Info("API token revoked", "id", id, "name", t.Name, "owner", t.User, "by", p.User)
	w.WriteHeader(http.StatusNoContent)
}
