// Package keyrate is a token-bucket rate limiter per key (a MAC, a source
// address) for input that clients control: at most max keys are tracked,
// and a flood of made-up keys evicts the least recently seen bucket (an
// evicted key starts over with a full bucket, which is what a new key gets
// anyway), so memory is bounded and each call costs O(1).
package keyrate

import (
	"container/list"
	"sync"
	"time"
)

// Limiter limits each key to rate events per second with bursts of burst.
type Limiter[K comparable] struct {
	rate  float64 // tokens per second
	burst float64
	max   int
	now   func() time.Time

	// mu guards buckets and lru.
	mu      sync.Mutex
	buckets map[K]*list.Element // of *bucket[K]
	lru     *list.List          // front: most recently seen
}

type bucket[K comparable] struct {
	key    K
	tokens float64
	last   time.Time
}

// New returns a limiter tracking at most max keys; now is the clock.
func New[K comparable](rate, burst float64, max int, now func() time.Time) *Limiter[K] {
	return &Limiter[K]{rate: rate, burst: burst, max: max, now: now, buckets: map[K]*list.Element{}, lru: list.New()}
}

// Allow takes a token from k's bucket and reports whether there was one.
func (l *Limiter[K]) Allow(k K) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var b *bucket[K]
	if e, ok := l.buckets[k]; ok {
		l.lru.MoveToFront(e)
		b = e.Value.(*bucket[K])
	} else {
		if l.lru.Len() >= l.max {
			old := l.lru.Back()
			delete(l.buckets, old.Value.(*bucket[K]).key)
			l.lru.Remove(old)
		}
		b = &bucket[K]{key: k, tokens: l.burst, last: now}
		l.buckets[k] = l.lru.PushFront(b)
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Len is the number of keys tracked.
func (l *Limiter[K]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}
