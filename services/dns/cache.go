package dns

import (
	"container/list"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// cache holds forwarded answers until their TTL runs out, at most max
// entries, evicting the least recently used.
type cache struct {
	max    int
	maxTTL time.Duration
	now    func() time.Time

	// mu guards lru and byKey.
	mu    sync.Mutex
	lru   *list.List // of *cacheEntry, most recently used first
	byKey map[string]*list.Element
}

type cacheEntry struct {
	key     string
	msg     *dns.Msg // answer as received from upstream, TTLs as of stored
	stored  time.Time
	expires time.Time
}

func newCache(max int, maxTTL time.Duration, now func() time.Time) *cache {
	return &cache{max: max, maxTTL: maxTTL, now: now, lru: list.New(), byKey: map[string]*list.Element{}}
}

// cacheKey identifies a question: name (case-folded), type, class and the
// DO and CD bits, which change what an upstream returns.
func cacheKey(q dns.Question, do, cd bool) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(q.Name))
	b.WriteByte('/')
	b.WriteString(strconv.Itoa(int(q.Qtype)))
	b.WriteByte('/')
	b.WriteString(strconv.Itoa(int(q.Qclass)))
	if do {
		b.WriteString("/do")
	}
	if cd {
		b.WriteString("/cd")
	}
	return b.String()
}

// ttlFor returns how long an upstream answer may be cached: the smallest TTL
// of its records, or for negative answers the SOA's negative TTL (RFC 2308).
// Zero means "do not cache".
func ttlFor(m *dns.Msg) time.Duration {
	if m.Truncated {
		return 0
	}
	switch m.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		return 0
	}
	min := uint32(0)
	seen := false
	take := func(t uint32) {
		if !seen || t < min {
			min, seen = t, true
		}
	}
	for _, rr := range m.Answer {
		take(rr.Header().Ttl)
	}
	negative := m.Rcode == dns.RcodeNameError || len(m.Answer) == 0
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok && negative {
			take(soa.Hdr.Ttl)
			take(soa.Minttl)
		} else if !negative {
			take(rr.Header().Ttl)
		}
	}
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT && !negative {
			take(rr.Header().Ttl)
		}
	}
	if !seen {
		return 0
	}
	return time.Duration(min) * time.Second
}

// put stores a copy of m under key if it may be cached.
func (c *cache) put(key string, m *dns.Msg) {
	if c.max <= 0 {
		return
	}
	ttl := ttlFor(m)
	if ttl > c.maxTTL {
		ttl = c.maxTTL
	}
	if ttl <= 0 {
		return
	}
	now := c.now()
	e := &cacheEntry{key: key, msg: m.Copy(), stored: now, expires: now.Add(ttl)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.byKey[key] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.byKey, old.Value.(*cacheEntry).key)
	}
}

// get returns a copy of the cached answer with TTLs lowered by the time it
// spent in the cache, or nil.
func (c *cache) get(key string) *dns.Msg {
	now := c.now()
	c.mu.Lock()
	el, ok := c.byKey[key]
	if !ok {
		c.mu.Unlock()
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.byKey, key)
		c.mu.Unlock()
		return nil
	}
	c.lru.MoveToFront(el)
	c.mu.Unlock()

	age := uint32(now.Sub(e.stored) / time.Second)
	m := e.msg.Copy()
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			if h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
		}
	}
	return m
}

// len returns the number of entries (for tests).
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
