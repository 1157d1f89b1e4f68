package api

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"kiln.dev/kiln/services/store"
)

// Event streams are capped: one user (an account, or one trusted-network
// source) may hold maxStreamsPerUser open at once — enough for a few
// browser tabs, each with the events, vetting and a log stream — and the
// server maxStreams in all. A stream past either cap is refused with 429
// too_many_streams rather than closing an older one, so tabs never fight.
const (
	maxStreamsPerUser = 8
	maxStreams        = 256
)

// streamSlots counts open event streams per user and in all.
type streamSlots struct {
	// mu guards per and total.
	mu    sync.Mutex
	per   map[string]int
	total int
}

// streamKey is whom a stream counts against: the account, or for an
// anonymous trusted-network caller its source (IPv6 by /64).
func streamKey(p *Principal, r *http.Request) string {
	if p == nil || p.Via == viaTrusted {
		return "trusted " + sourceOf(remoteAddr(r)).String()
	}
	return "user " + p.User
}

// acquire takes a slot for key; false when key or the server is at its cap.
func (ss *streamSlots) acquire(key string) (release func(), ok bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.per[key] >= maxStreamsPerUser || ss.total >= maxStreams {
		return nil, false
	}
	if ss.per == nil {
		ss.per = map[string]int{}
	}
	ss.per[key]++
	ss.total++
	return sync.OnceFunc(func() {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if ss.per[key]--; ss.per[key] <= 0 {
			delete(ss.per, key)
		}
		ss.total--
	}), true
}

// streamSlot takes a stream slot for the caller of r, or answers 429 and
// returns false.
func (s *Server) streamSlot(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	p := Caller(r)
	release, ok = s.slots.acquire(streamKey(p, r))
	if !ok {
		who := "this address"
		if p != nil && p.Via != viaTrusted {
			who = p.User
		}
		WriteError(w, Errorf(http.StatusTooManyRequests, CodeTooManyStreams, "",
			"%s already has %d event streams open (the appliance allows %d per user, %d in all): close other tabs or streams and reload",
			who, maxStreamsPerUser, maxStreamsPerUser, maxStreams))
	}
	return release, ok
}

// followChanges takes a stream slot for the caller of r and subscribes to
// the change feed; done undoes both. Without a slot it answers 429 and
// returns false.
func (s *Server) followChanges(w http.ResponseWriter, r *http.Request) (done func(), ok bool) {
	release, ok := s.streamSlot(w, r)
	if !ok {
		return nil, false
	}
	unsubscribe := s.feed.subscribe()
	return func() { unsubscribe(); release() }, true
}

// snapshot is what the change feed last saw.
type snapshot struct {
	ok      bool // marks were read at least once
	marks   store.ChangeMarks
	vetLast int64  // newest vetting change-log id
	status  string // the supervisor's status as JSON; "" until read
}

// changeFeed reads the store's change marks, the vetting change log's
// newest id and the supervisor's status once per interval for every event
// stream at once, and wakes the streams when something changed; each stream
// then reads only what it has not sent. It polls only while a stream is
// subscribed.
type changeFeed struct {
	interval time.Duration
	poll     func(ctx context.Context, tick int, prev snapshot) snapshot
	closed   <-chan struct{}
	// ticks makes the ticker; tests replace it to tick by hand.
	ticks func(time.Duration) (<-chan time.Time, func())

	// mu guards the fields below.
	mu      sync.Mutex
	subs    int
	running bool
	cur     snapshot
	changed chan struct{} // closed and replaced when cur changes
}

func newChangeFeed(interval time.Duration, closed <-chan struct{}, poll func(context.Context, int, snapshot) snapshot) *changeFeed {
	return &changeFeed{interval: interval, poll: poll, closed: closed, changed: make(chan struct{}),
		ticks: func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}}
}

// subscribe keeps the feed polling until the returned func is called.
func (f *changeFeed) subscribe() (unsubscribe func()) {
	f.mu.Lock()
	f.subs++
	start := !f.running
	f.running = true
	f.mu.Unlock()
	if start {
		go f.run()
	}
	return sync.OnceFunc(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.subs--
	})
}

// current returns the latest snapshot and a channel closed when it changes.
func (f *changeFeed) current() (snapshot, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur, f.changed
}

func (f *changeFeed) run() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-f.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	tick, stop := f.ticks(f.interval)
	defer stop()
	for n := 0; ; n++ {
		f.mu.Lock()
		prev := f.cur
		f.mu.Unlock()
		next := f.poll(ctx, n, prev)
		f.mu.Lock()
		if next != prev {
			f.cur = next
			close(f.changed)
			f.changed = make(chan struct{})
		}
		if f.subs == 0 {
			// Stop; the next subscriber starts polling again.
			f.running = false
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
	}
}

// pollChanges is the feed's one read per interval: change marks and the
// vetting log every tick, the supervisor's status every other one.
func (s *Server) pollChanges(ctx context.Context, tick int, prev snapshot) snapshot {
	next := prev
	if m, err := s.marks(ctx); err == nil {
		next.ok, next.marks = true, m
	} else if ctx.Err() == nil {
		s.log.Warn("reading change marks for event streams", "err", err)
	}
	if s.o.Vetting != nil {
		if id, err := s.o.Store.LastVetEventID(ctx); err == nil {
			next.vetLast = id
		}
	}
	if s.o.Supervisor != nil && tick%2 == 0 {
		if st, err := s.supervisorStatus(ctx); err == nil {
			if b, err := json.Marshal(st); err == nil {
				next.status = string(b)
			}
		}
	}
	return next
}
