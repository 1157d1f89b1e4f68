package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
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

// Lockout policy: this many failed logins (or bad tokens) from one address
// within failWindow lock it out (and ask the Banner to ban it) for banFor.
const (
	maxFailures = 5
	failWindow  = 10 * time.Minute
	banFor      = 15 * time.Minute
)

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
		if s.guard.locked(addr, now) {
			return nil, Errorf(http.StatusTooManyRequests, CodeTooMany, "", "too many failed attempts from %s: try again in %v", addr, banFor)
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
		s.guard.fail(addr, now, "unknown, revoked or expired API token", "")
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

// guard counts failed logins per address and locks out (and bans) an
// address after maxFailures within failWindow.
type guard struct {
	banner Banner
	log    *slog.Logger

	// mu guards fails.
	mu    sync.Mutex
	fails map[netip.Addr]*failures
}

type failures struct {
	count  int
	first  time.Time
	banned time.Time // locked out until then
}

func newGuard(b Banner, log *slog.Logger) *guard {
	return &guard{banner: b, log: log, fails: map[netip.Addr]*failures{}}
}

// locked reports whether addr is locked out at now.
func (g *guard) locked(addr netip.Addr, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.fails[addr]
	return f != nil && now.Before(f.banned)
}

// fail records a failed attempt, logs it and bans addr when it is one too many.
func (g *guard) fail(addr netip.Addr, now time.Time, why, user string) {
	g.mu.Lock()
	f := g.fails[addr]
	if f == nil || now.Sub(f.first) > failWindow {
		f = &failures{first: now}
		g.fails[addr] = f
	}
	f.count++
	ban := f.count >= maxFailures && !now.Before(f.banned)
	if ban {
		f.banned = now.Add(banFor)
		f.count, f.first = 0, now
	}
	// Forget old entries so the map stays small.
	for a, o := range g.fails {
		if now.Sub(o.first) > failWindow && now.After(o.banned) {
			delete(g.fails, a)
		}
	}
	g.mu.Unlock()
	g.log.Warn("authentication failed", "remote", addr.String(), "user", user, "reason", why)
	if ban {
		g.log.Warn("too many failed logins: locking the address out", "remote", addr.String(), "for", banFor)
		if g.banner != nil && addr.IsValid() {
			g.banner.Ban(addr, banFor)
		}
	}
}

// succeed forgets addr's failures after a good login.
func (g *guard) succeed(addr netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f := g.fails[addr]; f != nil && f.banned.IsZero() {
		delete(g.fails, addr)
	}
}
