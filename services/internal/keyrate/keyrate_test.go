package keyrate

import (
	"net/netip"
	"testing"
	"time"
)

func TestAllow(t *testing.T) {
	now := time.Unix(0, 0)
	l := New[netip.Addr](2, 3, 100, func() time.Time { return now })
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	var got []bool
	for range 4 {
		got = append(got, l.Allow(a))
	}
	if want := []bool{true, true, true, false}; len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("Allow(a) x4 = %v, want %v", got, want)
	}
	if !l.Allow(b) {
		t.Errorf("Allow(b) = false, want its own bucket")
	}
	now = now.Add(500 * time.Millisecond)
	if !l.Allow(a) || l.Allow(a) {
		t.Errorf("after 0.5s at 2/s: want exactly one more event")
	}
}

// TestBounded: a flood of keys leaves the limiter at its cap, and a key
// seen again keeps its (empty) bucket while the flood evicts the oldest.
func TestBounded(t *testing.T) {
	now := time.Unix(0, 0)
	l := New[uint32](2, 3, 1000, func() time.Time { return now })
	const busy = 1 << 31
	for range 3 {
		l.Allow(busy)
	}
	for i := range uint32(52000) {
		l.Allow(i)
		if i%500 == 0 && l.Allow(busy) {
			t.Fatalf("the busy key got a fresh bucket after %d flood keys (it must stay recently seen)", i)
		}
	}
	if n := l.Len(); n != 1000 {
		t.Errorf("Len() after a flood of 52,000 keys = %d, want the cap of 1000", n)
	}
}
