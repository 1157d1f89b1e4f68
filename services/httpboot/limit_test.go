package httpboot

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"kiln.dev/kiln/services/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// TestEventLimiterOneSource: a flood from one address stores Burst events,
// then one per Every carrying the count of what was held back.
func TestEventLimiterOneSource(t *testing.T) {
	l := newEventLimiter(EventLimit{})
	src := netip.MustParseAddr("10.0.0.66")
	kept := 0
	for range 31_000 {
		if ok, _ := l.allow(src, t0); ok {
			kept++
		}
	}
	if kept != 10 {
		t.Errorf("allow() kept %d of 31000 events at one instant, want the burst of 10", kept)
	}
	ok, suppressed := l.allow(src, t0.Add(6*time.Second))
	if !ok || suppressed != 31_000-10 {
		t.Errorf("allow() 6 s later = %v, %d suppressed; want kept with 30990 suppressed", ok, suppressed)
	}
	if ok, _ := l.allow(netip.MustParseAddr("10.0.0.67"), t0); !ok {
		t.Errorf("allow() for another source = false: one source's flood starved it")
	}
}

// TestEventLimiterBoundsSources: 100,000 sources leave at most Sources
// entries, and all sources together at most TotalBurst events at once.
func TestEventLimiterBoundsSources(t *testing.T) {
	l := newEventLimiter(EventLimit{})
	kept := 0
	for i := range 100_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if ok, _ := l.allow(a, t0); ok {
			kept++
		}
	}
	if n := l.tracked(); n != 4096 {
		t.Errorf("tracked() = %d after 100000 sources, want the bound 4096", n)
	}
	if kept != 200 {
		t.Errorf("allow() kept %d events of 100000 sources at one instant, want the total burst 200", kept)
	}
	// IPv6: one /64 is one source.
	l = newEventLimiter(EventLimit{Burst: 2})
	kept = 0
	for i := range 100 {
		if ok, _ := l.allow(netip.MustParseAddr(fmt.Sprintf("fd00:1:2:3::%x", i+1)), t0); ok {
			kept++
		}
	}
	if kept != 2 || l.tracked() != 1 {
		t.Errorf("100 addresses of one /64: kept %d, tracked %d; want 2 kept, 1 source", kept, l.tracked())
	}
}

// TestScriptFloodStoresBoundedRows: unauthenticated script requests over
// one loopback connection, against the real store, leave a bounded number
// of boot event rows (today's main stored one per request).
func TestScriptFloodStoresBoundedRows(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	root, _ := filesRoot(t)
	s, err := New(Options{FilesRoot: root}, storeHosts{st: st, now: time.Now}, storeEvents{st}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()
	const requests = 3000
	start := time.Now()
	for i := range requests {
		res, err := srv.Client().Get(srv.URL + fmt.Sprintf("/boot/52:54:00:00:%02x:%02x.ipxe?token=guess", i>>8&0xff, i&0xff))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("request %d = %d", i, res.StatusCode)
		}
	}
	elapsed := time.Since(start)
	rows := 0
	for i := range requests {
		es, err := st.BootEvents(ctx, fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8&0xff, i&0xff), 10)
		if err != nil {
			t.Fatal(err)
		}
		rows += len(es)
	}
	// The burst, plus what the bucket refilled while the flood ran.
	bound := 10 + int(elapsed/(6*time.Second)) + 1
	t.Logf("%d requests in %s from one connection stored %d boot event rows (bound %d)", requests, elapsed.Round(time.Millisecond), rows, bound)
	if rows > bound {
		t.Errorf("%d requests stored %d rows, want at most %d", requests, rows, bound)
	}
}

// fakePruner records what PruneBootEvents asked.
type fakePruner struct {
	before time.Time
	keep   int
}

func (f *fakePruner) PruneBootEvents(_ context.Context, before time.Time) (int64, error) {
	f.before = before
	return 3, nil
}

func (f *fakePruner) PruneBootEventsKeep(_ context.Context, keep int) (int64, error) {
	f.keep = keep
	return 4, nil
}

func TestPruneBootEvents(t *testing.T) {
	var f fakePruner
	n, err := PruneBootEvents(context.Background(), &f, t0, BootEventMaxAge, BootEventMaxRows)
	if err != nil || n != 7 || !f.before.Equal(t0.Add(-30*24*time.Hour)) || f.keep != 100_000 {
		t.Errorf("PruneBootEvents() = %d, %v, asked before %s keep %d; want 7, older than 30 days, keep 100000", n, err, f.before, f.keep)
	}
}

func TestNeighborIn(t *testing.T) {
	table := []byte(`IP address       HW type     Flags       HW address            Mask     Device
10.0.0.60        0x1         0x2         52:54:00:00:00:0b     *        eth1
10.0.0.61        0x1         0x0         00:00:00:00:00:00     *        eth1
10.0.0.62        0x1         0x6         52:54:00:00:00:0C     *        eth1
`)
	for _, tc := range []struct{ ip, want string }{
		{"10.0.0.60", "52:54:00:00:00:0b"},
		{"10.0.0.61", ""}, // incomplete
		{"10.0.0.62", "52:54:00:00:00:0c"},
		{"10.0.0.63", ""},
	} {
		if got := neighborIn(table, netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("neighborIn(%s) = %q, want %q", tc.ip, got, tc.want)
		}
	}
}
