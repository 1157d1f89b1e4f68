package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"kiln.dev/kiln/ota/install"
)

func TestOffset(t *testing.T) {
	const period = 24 * time.Hour
	if Offset("kiln/52:54:00:6b:6c:01", period) != Offset("kiln/52:54:00:6b:6c:01", period) {
		t.Fatal("Offset is not deterministic")
	}
	// A fleet spreads over the period: 2400 appliances in 24 hourly buckets.
	buckets := make([]int, 24)
	for i := 0; i < 2400; i++ {
		off := Offset(fmt.Sprintf("kiln/52:54:00:00:%02x:%02x", i/256, i%256), period)
		if off < 0 || off >= period {
			t.Fatalf("Offset = %v, outside [0, %v)", off, period)
		}
		buckets[off/time.Hour]++
	}
	for h, n := range buckets {
		if n < 50 || n > 150 {
			t.Errorf("hour %d has %d of 2400 appliances, want about 100: the offsets are not spread", h, n)
		}
	}
	if Offset("x", 0) != 0 {
		t.Error("Offset with a zero period is not 0")
	}
}

func TestNext(t *testing.T) {
	day := 24 * time.Hour
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, tc := range []struct {
		now    string
		period time.Duration
		offset time.Duration
		want   string
	}{
		{"2026-11-21T08:00:00Z", day, 3 * time.Hour, "2026-11-22T03:00:00Z"},
		{"2026-11-21T02:59:59Z", day, 3 * time.Hour, "2026-11-21T03:00:00Z"},
		{"2026-11-21T03:00:00Z", day, 3 * time.Hour, "2026-11-22T03:00:00Z"}, // strictly after
		{"2026-11-21T08:10:00Z", time.Hour, 15 * time.Minute, "2026-11-21T08:15:00Z"},
		{"2026-11-21T08:20:00Z", time.Hour, 15 * time.Minute, "2026-11-21T09:15:00Z"},
	} {
		if got := Next(at(tc.now), tc.period, tc.offset); !got.Equal(at(tc.want)) {
			t.Errorf("Next(%s, %v, %v) = %s, want %s", tc.now, tc.period, tc.offset, got.UTC().Format(time.RFC3339), tc.want)
		}
	}
}

type fakeInstaller struct {
	got []string
	err error
}

func (f *fakeInstaller) Install(_ context.Context, r io.Reader, req install.Request) (install.Result, error) {
	b, _ := io.ReadAll(r)
	f.got = append(f.got, string(b))
	return install.Result{}, f.err
}

func channel(t *testing.T, index string) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/stable.json", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, index) })
	mux.HandleFunc("/bundles/kiln-7.bundle", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "BUNDLE-7") })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestCheckOnce(t *testing.T) {
	good := `{"compatible":"kiln-x86_64","version":"2.1","generation":7,"url":"bundles/kiln-7.bundle"}`
	for _, tc := range []struct {
		name      string
		index     string
		running   int
		failed    bool
		instErr   error
		want      bool
		wantErr   bool
		installed int
	}{
		{name: "newer", index: good, running: 6, want: true, installed: 1},
		{name: "up to date", index: good, running: 7},
		{name: "running is newer", index: good, running: 9},
		{name: "failed before", index: good, running: 6, failed: true},
		{name: "other appliance", index: `{"compatible":"kiln-aarch64","version":"2.1","generation":7,"url":"x"}`, running: 6},
		{name: "install refused", index: good, running: 6, instErr: errors.New("bad signature"), wantErr: true, installed: 1},
		{name: "bad index", index: `{"generation":"seven"}`, running: 6, wantErr: true},
		{name: "unknown field", index: `{"generation":7,"url":"x","script":"rm -rf /"}`, running: 6, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := channel(t, tc.index)
			inst := &fakeInstaller{err: tc.instErr}
			p := &Puller{Channel: srv.URL + "/stable.json", Period: time.Hour, Compatible: "kiln-x86_64", Installer: inst,
				Running: func() (int, error) { return tc.running, nil }, Failed: func(int) bool { return tc.failed }}
			got, err := p.CheckOnce(context.Background())
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("CheckOnce = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
			if len(inst.got) != tc.installed || tc.installed > 0 && inst.got[0] != "BUNDLE-7" {
				t.Errorf("installer got %q", inst.got)
			}
		})
	}
}

// TestRunWaitsForTheSlot drives Run with a fake clock: it sleeps exactly
// until the appliance's slot, checks, installs and reboots.
func TestRunWaitsForTheSlot(t *testing.T) {
	srv := channel(t, `{"compatible":"kiln-x86_64","version":"2.1","generation":7,"url":"bundles/kiln-7.bundle"}`)
	now := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waits []time.Duration
	rebooted := make(chan struct{}, 1)
	p := &Puller{Channel: srv.URL + "/stable.json", Period: time.Hour, ID: "kiln/52:54:00:6b:6c:01", Compatible: "kiln-x86_64",
		Installer: &fakeInstaller{}, Running: func() (int, error) { return 6, nil },
		Reboot: func() error { rebooted <- struct{}{}; cancel(); return nil },
		Now:    func() time.Time { return now },
		After: func(d time.Duration) <-chan time.Time {
			waits = append(waits, d)
			now = now.Add(d)
			c := make(chan time.Time, 1)
			c <- now
			return c
		}}
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-rebooted:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not install and reboot")
	}
	<-done
	want := Offset(p.ID, time.Hour) // 08:00 is a period boundary
	if len(waits) == 0 || waits[0] != want {
		t.Errorf("Run waited %v first, want the appliance's offset %v", waits, want)
	}
}
