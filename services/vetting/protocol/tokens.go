package protocol

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Token errors a TokenChecker returns; the server answers both with 401.
var (
	ErrUnknownToken = errors.New("unknown bearer token")
	ErrTokenExpired = errors.New("bearer token expired")
)

// ErrWrongSource is returned by a SourceChecker for a request from another
// address than the one its run's token is bound to; the server answers 403.
var ErrWrongSource = errors.New("the run's token is bound to another address")

// SourceChecker is an optional ability of a TokenChecker: a run's token is
// bound to the address of the run's first hello, and requests from any
// other address are refused (a token seen on the LAN is not enough to post
// a forged inventory or report).
type SourceChecker interface {
	// CheckSource returns nil when run may be called from from, or an
	// error wrapping ErrWrongSource.
	CheckSource(ctx context.Context, runID string, from netip.Addr) error
}

// TokenChecker resolves a run's bearer token. The orchestrator implements it
// over its database (storing HashToken of each token, never the token).
type TokenChecker interface {
	// CheckToken returns the run the token belongs to, ErrTokenExpired when
	// its run's time is up, or ErrUnknownToken.
	CheckToken(ctx context.Context, token string, now time.Time) (runID string, err error)
}

// NewToken returns a fresh random token: 32 bytes, URL-safe base64 without
// padding (characters iPXE scripts and kernel command lines carry as is).
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// HashToken is what to store instead of a token: hex SHA-256.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Tokens is an in-memory TokenChecker: per-run tokens that expire.
type Tokens struct {
	mu sync.Mutex
	// byHash maps HashToken(token) to its run and expiry; guarded by mu.
	byHash map[string]tokenEntry
}

type tokenEntry struct {
	run     string
	expires time.Time
}

// NewTokens returns an empty token table.
func NewTokens() *Tokens { return &Tokens{byHash: map[string]tokenEntry{}} }

// Issue creates a token for run, valid until expires.
func (t *Tokens) Issue(runID string, expires time.Time) (string, error) {
	tok, err := NewToken()
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byHash[HashToken(tok)] = tokenEntry{run: runID, expires: expires}
	return tok, nil
}

// Revoke drops every token of run.
func (t *Tokens) Revoke(runID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for h, e := range t.byHash {
		if e.run == runID {
			delete(t.byHash, h)
		}
	}
}

// CheckToken implements TokenChecker. Lookup is by the token's hash, so
// timing says nothing about how much of a guessed token was right.
func (t *Tokens) CheckToken(_ context.Context, token string, now time.Time) (string, error) {
	h := HashToken(token)
	t.mu.Lock()
	e, ok := t.byHash[h]
	t.mu.Unlock()
	if !ok {
		return "", ErrUnknownToken
	}
	if !now.Before(e.expires) {
		return "", ErrTokenExpired
	}
	return e.run, nil
}
