package httpboot

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// EventLimit bounds the boot events the server stores: every request may
// come from anyone on the LAN, and each stored event is a database row.
// Each source (an IPv4 address, an IPv6 /64) gets Burst events, then one
// per Every; all sources together TotalBurst, then one per TotalEvery. What
// is held back is counted and merged into the source's next stored event
// ("N more … suppressed"). Zero fields take the defaults.
type EventLimit struct {
	Burst      int           // default 10: a boot is a script and two artifacts
	Every      time.Duration // default 6 s
	Sources    int           // sources remembered, least recently seen forgotten first; default 4096
	TotalBurst int           // default 200
	TotalEvery time.Duration // default 50 ms (20 events/s)
}

func (l EventLimit) withDefaults() EventLimit {
	if l.Burst <= 0 {
		l.Burst = 10
	}
	if l.Every <= 0 {
		l.Every = 6 * time.Second
	}
	if l.Sources <= 0 {
		l.Sources = 4096
	}
	if l.TotalBurst <= 0 {
		l.TotalBurst = 200
	}
	if l.TotalEvery <= 0 {
		l.TotalEvery = 50 * time.Millisecond
	}
	return l
}

// bucket is a token bucket holding up to burst tokens, one more per every.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, burst int, every time.Duration) bool {
	if b.last.IsZero() {
		b.tokens = float64(burst)
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(burst), b.tokens+float64(d)/float64(every))
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// source is one client's bucket and what it had suppressed.
type source struct {
	key        netip.Addr
	b          bucket
	suppressed int
}

// eventLimiter applies an EventLimit; its memory is bounded by Sources.
type eventLimiter struct {
	lim EventLimit
	// mu guards the fields below.
	mu sync.Mutex
	// recent holds *source, most recently seen first; bySource indexes it.
	recent   *list.List
	bySource map[netip.Addr]*list.Element
	total    bucket
}

func newEventLimiter(l EventLimit) *eventLimiter {
	return &eventLimiter{lim: l.withDefaults(), recent: list.New(), bySource: map[netip.Addr]*list.Element{}}
}

// sourceKey groups IPv6 clients by /64: one machine can use many addresses
// of its prefix.
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}

// allow reports whether an event from client may be stored at now and, if
// so, how many of the source's events were suppressed since its last stored
// one. Constant time per call.
func (l *eventLimiter) allow(client netip.Addr, now time.Time) (bool, int) {
	key := sourceKey(client)
	l.mu.Lock()
	defer l.mu.Unlock()
	var src *source
	if e, ok := l.bySource[key]; ok {
		l.recent.MoveToFront(e)
		src = e.Value.(*source)
	} else {
		if l.recent.Len() >= l.lim.Sources {
			old := l.recent.Back()
			l.recent.Remove(old)
			delete(l.bySource, old.Value.(*source).key)
		}
		src = &source{key: key}
		l.bySource[key] = l.recent.PushFront(src)
	}
	// The source's own bucket first: a flooding source does not drain the
	// shared one.
	if !src.b.take(now, l.lim.Burst, l.lim.Every) || !l.total.take(now, l.lim.TotalBurst, l.lim.TotalEvery) {
		src.suppressed++
		return false, 0
	}
	n := src.suppressed
	src.suppressed = 0
	return true, n
}

// tracked returns how many sources the limiter remembers.
func (l *eventLimiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.bySource)
}
