package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestLoginBackoffPerAccountAndSource (issue 11, finding 9): a guesser
// spread over many addresses is slowed per account, with a doubling wait
// during which even the right password is refused; an IPv6 guesser is
// locked out by its /64, not per address; unknown names back off like
// known ones, so the answer does not reveal which accounts exist.
func TestLoginBackoffPerAccountAndSource(t *testing.T) {
	clock := &testClock{now: time.Now()}
	ts := newTestServer(t, func(o *Options) { o.Now = clock.Now })
	pw := ts.initialPassword()
	for i := range accountFree {
		if w := ts.loginFrom(fmt.Sprintf("10.1.0.%d:4000", i+1), AdminUser, "guess"); w.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d = %d %s, want 401", i+1, w.Code, w.Body)
		}
	}
	w := ts.loginFrom("10.1.0.99:4000", AdminUser, pw)
	if w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), CodeTooMany) || w.Header().Get("Retry-After") != "1" {
		t.Errorf("right password after %d guesses from other addresses = %d %s (Retry-After %q), want 429 with Retry-After 1",
			accountFree, w.Code, w.Body, w.Header().Get("Retry-After"))
	}
	clock.Advance(accountBase)
	if w := ts.loginFrom("10.1.0.99:4000", AdminUser, pw); w.Code != http.StatusCreated {
		t.Fatalf("right password once the wait is over = %d %s, want 201", w.Code, w.Body)
	}
	// The success cleared the count; from here every guess past the free
	// ones doubles the wait. Each comes from its own address, so no source
	// is locked out.
	for _, user := range []string{AdminUser, "nobody-at-all"} {
		var waits []string
		for i := range accountFree + 4 {
			w := ts.loginFrom(fmt.Sprintf("10.2.%d.%d:4000", len(user), i+1), user, "guess")
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("%s guess %d = %d %s, want 401", user, i+1, w.Code, w.Body)
			}
			if i+1 >= accountFree {
				w := ts.loginFrom("10.3.0.1:4000", user, "guess")
				waits = append(waits, w.Header().Get("Retry-After"))
				if w.Code != http.StatusTooManyRequests {
					t.Errorf("%s attempt during the wait = %d %s, want 429", user, w.Code, w.Body)
				}
				clock.Advance(accountBase << (i + 1 - accountFree))
			}
		}
		if got, want := strings.Join(waits, " "), "1 2 4 8 16"; got != want {
			t.Errorf("%s: Retry-After after each guess past %d = %s, want %s", user, accountFree, got, want)
		}
	}
	// One IPv6 /64 is one source: five guesses from five of its addresses
	// lock out the whole /64, and only it.
	before := ts.banner.count()
	for i := range maxFailures {
		if w := ts.loginFrom(fmt.Sprintf("[2001:db8:1:2::%x]:4000", i+1), fmt.Sprintf("user%d", i), "guess"); w.Code != http.StatusUnauthorized {
			t.Fatalf("IPv6 guess %d = %d %s, want 401", i+1, w.Code, w.Body)
		}
	}
	if w := ts.loginFrom("[2001:db8:1:2::ffff]:4000", "someone", "guess"); w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), "2001:db8:1:2::ffff") {
		t.Errorf("another address of the /64 = %d %s, want 429", w.Code, w.Body)
	}
	if w := ts.loginFrom("[2001:db8:1:3::1]:4000", "someone", "guess"); w.Code != http.StatusUnauthorized {
		t.Errorf("an address of the next /64 = %d %s, want 401", w.Code, w.Body)
	}
	if ts.banner.count() != before+1 || ts.banner.bans[before] != netip.MustParseAddr("2001:db8:1:2::5") {
		t.Errorf("bans = %v, want 2001:db8:1:2::5 added once", ts.banner.bans)
	}
}

// TestGuardStaysBounded: a flood of failures from ever new sources and
// names leaves each table at its bound, and made-up names do not push a
// real account's backoff out.
func TestGuardStaysBounded(t *testing.T) {
	g := newGuard(nil, discardLogger())
	now := time.Now()
	for range accountFree {
		g.fail(netip.MustParseAddr("192.0.2.1"), AdminUser, true, now, "test")
	}
	const flood = 100_000
	for i := range flood {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		g.fail(a, fmt.Sprintf("made-up-%d", i), false, now, "test")
		g.fail(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 16), byte(i >> 8), byte(i), 15: 1}), "", false, now, "test")
	}
	if n := g.sources.len(); n != maxSources {
		t.Errorf("sources after %d IPv4 and %d IPv6 sources = %d, want the bound %d", flood, flood, n, maxSources)
	}
	if n := g.unknown.len(); n != maxUnknownNames {
		t.Errorf("unknown names after %d = %d, want the bound %d", flood, n, maxUnknownNames)
	}
	if g.known.len() != 1 || g.nameLocked("Admin ", now) == 0 {
		t.Errorf("admin's backoff after the flood: known %d, waiting %v; want it kept", g.known.len(), g.nameLocked(AdminUser, now))
	}
	long := strings.Repeat("x", 4000)
	g.fail(netip.MustParseAddr("192.0.2.2"), long, false, now, "test")
	if _, ok := g.unknown.get(long[:maxNameKey]); !ok {
		t.Errorf("a 4000-byte name is not tracked under its first %d bytes", maxNameKey)
	}
}

func TestSourceOf(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7/32"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
	} {
		if got := sourceOf(netip.MustParseAddr(tc.in)).String(); got != tc.want {
			t.Errorf("sourceOf(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// BenchmarkGuardFloodFail is the cost of one failure once the source table
// is full (each one evicts the oldest source).
func BenchmarkGuardFloodFail(b *testing.B) {
	g := newGuard(nil, discardLogger())
	now := time.Now()
	i := 0
	for b.Loop() {
		g.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), fmt.Sprintf("n%d", i), false, now, "bench")
		i++
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
