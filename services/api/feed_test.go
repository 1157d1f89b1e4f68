package api

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"kiln.dev/kiln/services/store"
)

// TestStreamCapPerUser (issue 11, finding 10): one user holds at most
// maxStreamsPerUser event streams of any kind; the next is refused with
// 429 too_many_streams while other users are unaffected, and closing one
// frees its slot.
func TestStreamCapPerUser(t *testing.T) {
	ts := newTestServer(t, withVetting)
	a := ts.admin()
	paths := []string{"/api/v1/events", "/api/v1/vetting/stream", "/api/v1/services/mgmt/logs?follow=1"}
	var closers []context.CancelFunc
	for i := range maxStreamsPerUser {
		ch, cancel := ts.dialStream(paths[i%len(paths)], a, "")
		if i%len(paths) != 2 {
			next(t, ch, "hello")
		}
		closers = append(closers, cancel)
	}
	for _, p := range paths {
		res, cancel := ts.getStream(p, a, "")
		if res.StatusCode == http.StatusOK {
			t.Errorf("stream %d of admin, %s = 200, want 429 too_many_streams", maxStreamsPerUser+1, p)
			cancel()
			continue
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), CodeTooManyStreams) || !strings.Contains(string(b), "admin already has") {
			t.Errorf("stream %d of admin, %s = %d %s, want 429 too_many_streams", maxStreamsPerUser+1, p, res.StatusCode, b)
		}
	}
	// Another account is not affected, nor is a plain request of admin's.
	v := ts.newUser(a, "viewer", store.RoleRead)
	next(t, ts.openStream("/api/v1/events", v, ""), "hello")
	if r := ts.do(req{method: "GET", path: "/api/v1/hosts", as: a}); r.code != http.StatusOK {
		t.Errorf("admin GET hosts at the stream cap = %d, want 200", r.code)
	}
	// Closing one stream frees its slot (once the server has seen it go).
	closers[0]()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		res, cancel := ts.getStream("/api/v1/events", a, "")
		if res.StatusCode == http.StatusOK {
			next(t, readEvents(res), "hello")
			cancel()
			break
		}
		res.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("after closing a stream, a new one = %d, want 200", res.StatusCode)
		}
	}
}

// TestStreamsShareOnePoller: however many event streams are open, the
// store's change marks are read once per poll interval (here ticked by
// hand), not once per stream; the poller stops when the last stream goes.
func TestStreamsShareOnePoller(t *testing.T) {
	ts := newTestServer(t)
	var calls atomic.Int64
	marks := ts.marks
	ts.marks = func(ctx context.Context) (store.ChangeMarks, error) {
		calls.Add(1)
		return marks(ctx)
	}
	tick := make(chan time.Time)
	ts.feed.ticks = func(time.Duration) (<-chan time.Time, func()) { return tick, func() {} }

	a := ts.admin()
	v := ts.newUser(a, "viewer", store.RoleRead)
	var streams []<-chan sseEvent
	var closers []context.CancelFunc
	for i := range 2 * maxStreamsPerUser {
		as := a
		if i%2 == 1 {
			as = v
		}
		ch, cancel := ts.dialStream("/api/v1/events", as, "")
		next(t, ch, "hello")
		streams, closers = append(streams, ch), append(closers, cancel)
	}
	base := calls.Load()
	if base > 2 {
		t.Errorf("opening %d streams read the marks %d times, want 1 (2 if the first stream came before the first poll)", len(streams), base)
	}
	const ticks = 5
	for i := range ticks {
		if err := ts.db.AddBootEvent(context.Background(), store.BootEvent{MAC: "52:54:00:00:00:01", Kind: store.EventDHCPOffer}); err != nil {
			t.Fatal(err)
		}
		tick <- time.Now()
		for j, ch := range streams {
			if e := next(t, ch, "boot"); e.id == "" {
				t.Fatalf("tick %d: stream %d's boot event has no id", i, j)
			}
		}
	}
	if got := calls.Load() - base; got != ticks {
		t.Errorf("%d ticks with %d streams read the marks %d times, want %d", ticks, len(streams), got, ticks)
	}
	for _, c := range closers {
		c()
	}
	// The poller notices at its next tick that nobody listens and stops.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case tick <- time.Now():
		case <-time.After(100 * time.Millisecond):
		}
		ts.feed.mu.Lock()
		running := ts.feed.running
		ts.feed.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the poller still runs after every stream closed")
		}
	}
}
