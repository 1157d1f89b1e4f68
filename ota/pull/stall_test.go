package pull

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/ota/lockinstall"
	"kiln.dev/kiln/ota/oplock"
	"kiln.dev/kiln/ota/stall"
)

// TestStalledDownloadEnds: a channel that stops sending mid-bundle, or
// trickles forever, ends the install with the stall named, and the update
// lock is free again.
func TestStalledDownloadEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    stall.Deadlines
		send func(w http.ResponseWriter, r *http.Request)
		want error
	}{
		{"stops sending", stall.Deadlines{Idle: 200 * time.Millisecond, Overall: time.Hour},
			func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(strings.Repeat("x", 4096)))
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			}, stall.ErrIdle},
		{"trickles", stall.Deadlines{Idle: time.Hour, Overall: 300 * time.Millisecond},
			func(w http.ResponseWriter, r *http.Request) {
				for {
					select {
					case <-r.Context().Done():
						return
					case <-time.After(20 * time.Millisecond):
					}
					w.Write([]byte("x"))
					w.(http.Flusher).Flush()
				}
			}, stall.ErrOverall},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.HandleFunc("/stable.json", func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"compatible":"kiln-x86_64","version":"2.1","generation":7,"url":"kiln-7.bundle"}`)
			})
			mux.HandleFunc("/kiln-7.bundle", tc.send)
			srv := httptest.NewServer(mux)
			defer srv.Close()
			defer srv.CloseClientConnections() // on failure the handler still blocks
			lock := filepath.Join(t.TempDir(), "ota.lock")
			p := &Puller{Channel: srv.URL + "/stable.json", Period: time.Hour, Compatible: "kiln-x86_64",
				Installer: lockinstall.Installer{Lock: lock}, Running: func() (int, error) { return 6, nil }, Deadlines: tc.d}
			done := make(chan error, 1)
			go func() {
				_, err := p.CheckOnce(context.Background())
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, tc.want) {
					t.Errorf("CheckOnce = %v, want %v", err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("CheckOnce is still downloading 10 s into a stalled transfer")
			}
			lk, err := oplock.Acquire(lock, "after")
			if err != nil {
				t.Fatalf("the update lock after the stalled pull: %v", err)
			}
			lk.Release()
		})
	}
}
