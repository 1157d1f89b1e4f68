package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"kiln.dev/kiln/services/store"
)

// How callers authenticate.
const (
	viaSession = "session"
	viaToken   = "token"
	viaTrusted = "trusted"
)

// SessionCookie is the browser session cookie's name.
const SessionCookie = "kiln_session"

// TokenPrefix starts every API token secret, so leaked tokens are easy to grep for.
const TokenPrefix = "kiln_"

// MinPasswordLength is the shortest password an operator may choose.
const MinPasswordLength = 10

// randomString returns n random bytes, base64url without padding.
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashSecret is how session ids and token secrets are stored.
func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// remoteAddr is the caller's IP address (IPv4-mapped addresses unmapped).
func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// authenticate finds the caller: a bearer token, a session cookie, or a
// trusted network. No credentials is (nil, nil); bad credentials are an error.
func (s *Server) authenticate(r *http.Request) (*Principal, error) {
	ctx := r.Context()
	now := s.o.Now()
	addr := remoteAddr(r)
	if h := r.Header.Get("Authorization"); h != "" {
		if wait := s.guard.addrLocked(addr, now); wait > 0 {
			return nil, tooMany(wait, "too many failed attempts from %s: try again in %v", addr, roundWait(wait))
		}
		scheme, secret, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || !strings.HasPrefix(secret, TokenPrefix) {
			return nil, Errorf(http.StatusUnauthorized, CodeUnauthenticated, "", "Authorization must be \"Bearer %s…\" (an API token)", TokenPrefix)
		}
		t, u, err := s.o.Store.TokenByHash(ctx, hashSecret(secret))
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, err
		case !t.Active(now) || u.Disabled:
		default:
			if now.Sub(t.LastUsed) > time.Minute {
				s.o.Store.TouchToken(ctx, t.ID, now)
			}
			scope := t.Scope
			if u.Role.Rank() < scope.Rank() {
				scope = u.Role // a token never outranks its owner
			}
			return &Principal{User: u.Name, UserID: u.ID, Scope: scope, Via: viaToken, TokenID: t.ID}, nil
		}
		s.guard.fail(addr, "", false, now, "unknown, revoked or expired API token")
		return nil, Errorf(http.StatusUnauthorized, CodeUnauthenticated, "", "the API token is unknown, revoked or expired: run kiln login again or make a new token")
	}
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		se, u, err := s.o.Store.SessionByHash(ctx, hashSecret(c.Value))
		switch {
		case errors.Is(err, store.ErrNotFound):
			// Expired or logged out: treat as no credentials.
		case err != nil:
			return nil, err
		default:
			if now.Sub(se.LastSeen) > time.Minute {
				s.o.Store.TouchSession(ctx, se.IDHash, now)
			}
			return &Principal{User: u.Name, UserID: u.ID, Scope: u.Role, Via: viaSession, Session: se.IDHash, csrf: se.CSRF}, nil
		}
	}
	if a := s.o.Config.API; a.TrustLAN && addr.IsValid() {
		for _, p := range a.TrustedPrefixes() {
			if p.Contains(addr) {
				return &Principal{User: "trusted:" + addr.String(), Scope: store.Role(a.TrustedRole), Via: viaTrusted}, nil
			}
		}
	}
	return nil, nil
}

// hashPassword checks an operator's new password and hashes it.
func (s *Server) hashPassword(pw, field string) (string, error) {
	switch {
	case len(pw) < MinPasswordLength:
		return "", Errorf(http.StatusUnprocessableEntity, CodeInvalid, field, "%s: use at least %d characters", field, MinPasswordLength)
	case len(pw) > 72:
		return "", Errorf(http.StatusUnprocessableEntity, CodeInvalid, field, "%s: use at most 72 bytes (bcrypt's limit)", field)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), s.o.BcryptCost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}
