package api

import (
	"container/list"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Lockout policy for failed logins and bad tokens.
//
// Per source: maxFailures from one source within failWindow lock it out of
// the API (and ask the Banner to ban the address) for banFor. A source is an
// IPv4 address or an IPv6 /64, since one machine commonly holds a whole /64.
//
// Per account: after accountFree failed logins in a row for one user name,
// from any number of sources, each further attempt for that name waits
// accountBase, doubling per failure up to accountMax; the password is not
// even checked meanwhile. A success clears the count; so does accountMemory
// without failures. Unknown names are tracked the same way, so the answer
// does not tell which accounts exist. The console's password reset works
// whatever the backoff.
//
// Every map is bounded: at most maxSources sources and maxUnknownNames
// unknown names, the least recently failed forgotten first; known accounts
// (at most maxKnownNames tracked) cannot be pushed out by a flood of made-up
// names.
const (
	maxFailures = 5
	failWindow  = 10 * time.Minute
	banFor      = 15 * time.Minute

	accountFree   = 5
	accountBase   = time.Second
	accountMax    = 15 * time.Minute
	accountMemory = 24 * time.Hour

	maxSources      = 16384
	maxKnownNames   = 1024
	maxUnknownNames = 4096
	// maxNameKey bounds a tracked name's length (a login body may carry 4 KiB).
	maxNameKey = 128
)

// sourceOf is the key failures of addr count under: the address itself for
// IPv4, its /64 for IPv6.
func sourceOf(addr netip.Addr) netip.Prefix {
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	addr = addr.Unmap().WithZone("")
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}

// nameKey normalizes a user name as the store does, and bounds its length.
func nameKey(user string) string {
	k := strings.ToLower(strings.TrimSpace(user))
	if len(k) > maxNameKey {
		k = k[:maxNameKey]
	}
	return k
}

// tooMany is a 429 that tells the client when to try again.
func tooMany(wait time.Duration, format string, args ...any) error {
	return &retryError{Errorf(http.StatusTooManyRequests, CodeTooMany, "", format, args...), wait}
}

// roundWait is a wait as operators read it (whole seconds, at least 1 s).
func roundWait(d time.Duration) time.Duration {
	return max(time.Second, d.Round(time.Second))
}

// guard counts failures per source and per account name and says who must
// wait. Safe for concurrent use.
type guard struct {
	banner Banner
	log    *slog.Logger

	// mu guards the three tables.
	mu      sync.Mutex
	sources *lru[netip.Prefix, *sourceFailures]
	known   *lru[string, *nameFailures]
	unknown *lru[string, *nameFailures]
}

type sourceFailures struct {
	count  int
	first  time.Time
	banned time.Time // locked out until then
}

type nameFailures struct {
	count int       // failures in a row
	last  time.Time // of the latest failure
	until time.Time // no attempt before then
}

func newGuard(b Banner, log *slog.Logger) *guard {
	return &guard{banner: b, log: log,
		sources: newLRU[netip.Prefix, *sourceFailures](maxSources),
		known:   newLRU[string, *nameFailures](maxKnownNames),
		unknown: newLRU[string, *nameFailures](maxUnknownNames)}
}

// addrLocked says how long addr's source is still locked out (0: it is not).
func (g *guard) addrLocked(addr netip.Addr, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.sources.get(sourceOf(addr)); ok && now.Before(f.banned) {
		return f.banned.Sub(now)
	}
	return 0
}

// nameLocked says how long logins as user must still wait (0: none).
func (g *guard) nameLocked(user string, now time.Time) time.Duration {
	k := nameKey(user)
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, t := range []*lru[string, *nameFailures]{g.known, g.unknown} {
		if f, ok := t.get(k); ok && now.Before(f.until) {
			return f.until.Sub(now)
		}
	}
	return 0
}

// fail records a failed attempt from addr (for account user, "" for a bad
// token; known says whether the account exists), logs it, and bans addr's
// address when its source has failed once too often.
func (g *guard) fail(addr netip.Addr, user string, known bool, now time.Time, why string) {
	src := sourceOf(addr)
	g.mu.Lock()
	f, ok := g.sources.get(src)
	if !ok || now.Sub(f.first) > failWindow && !now.Before(f.banned) {
		f = &sourceFailures{first: now}
	}
	f.count++
	ban := f.count >= maxFailures && !now.Before(f.banned)
	if ban {
		f.banned = now.Add(banFor)
		f.count, f.first = 0, now
	}
	g.sources.put(src, f)
	var wait time.Duration
	if user != "" {
		k, t := nameKey(user), g.unknown
		if known {
			t = g.known
		}
		n, ok := t.get(k)
		if !ok || now.Sub(n.last) > accountMemory {
			n = &nameFailures{}
		}
		n.count++
		n.last = now
		if n.count >= accountFree {
			wait = accountMax
			if shift := n.count - accountFree; shift < 20 {
				wait = min(accountMax, accountBase<<shift)
			}
			n.until = now.Add(wait)
		}
		t.put(k, n)
	}
	g.mu.Unlock()
	g.log.Warn("authentication failed", "remote", addr.String(), "user", user, "reason", why)
	if wait > 0 {
		g.log.Warn("too many failed logins for the account: backing off", "user", user, "for", wait)
	}
	if ban {
		g.log.Warn("too many failed logins: locking the source out", "remote", addr.String(), "source", src.String(), "for", banFor)
		if g.banner != nil && addr.IsValid() {
			g.banner.Ban(addr, banFor)
		}
	}
}

// succeed forgets user's failures, and addr's unless it is banned, after a
// good login.
func (g *guard) succeed(addr netip.Addr, user string) {
	src, k := sourceOf(addr), nameKey(user)
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.sources.get(src); ok && f.banned.IsZero() {
		g.sources.remove(src)
	}
	g.known.remove(k)
	g.unknown.remove(k)
}

// lru is a map of at most max entries that forgets the least recently put
// entry when full; every operation is O(1). Not safe for concurrent use.
type lru[K comparable, V any] struct {
	max   int
	order *list.List // of *lruEntry, most recently put first
	items map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, order: list.New(), items: map[K]*list.Element{}}
}

func (l *lru[K, V]) get(k K) (V, bool) {
	if e, ok := l.items[k]; ok {
		return e.Value.(*lruEntry[K, V]).val, true
	}
	var zero V
	return zero, false
}

// put stores v under k as the most recent entry, evicting the oldest when full.
func (l *lru[K, V]) put(k K, v V) {
	if e, ok := l.items[k]; ok {
		e.Value.(*lruEntry[K, V]).val = v
		l.order.MoveToFront(e)
		return
	}
	if l.order.Len() >= l.max {
		old := l.order.Back()
		delete(l.items, old.Value.(*lruEntry[K, V]).key)
		l.order.Remove(old)
	}
	l.items[k] = l.order.PushFront(&lruEntry[K, V]{k, v})
}

func (l *lru[K, V]) remove(k K) {
	if e, ok := l.items[k]; ok {
		delete(l.items, k)
		l.order.Remove(e)
	}
}

func (l *lru[K, V]) len() int { return l.order.Len() }
