package otahttp

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/ota/lockinstall"
	"kiln.dev/kiln/ota/oplock"
	"kiln.dev/kiln/ota/stall"
)

// TestStalledPushEnds: an upload that stops mid-bundle gets 408 naming the
// stall, and the update lock is free again.
func TestStalledPushEnds(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "ota.lock")
	srv := serve(t, &Handler{Installer: lockinstall.Installer{Lock: lock}, Slots: &fakeSlots{},
		Deadlines: stall.Deadlines{Idle: 200 * time.Millisecond, Overall: time.Hour}})
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "POST /api/v1/update/bundle HTTP/1.1\r\nHost: kiln\r\nContent-Length: 100000000\r\n\r\n%s", strings.Repeat("x", 4096))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled push within 10 s: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "stalled") {
		t.Errorf("stalled push = %d %s, want 408 naming the stall", resp.StatusCode, b)
	}
	lk, err := oplock.Acquire(lock, "after")
	if err != nil {
		t.Fatalf("the update lock after the stalled push: %v", err)
	}
	lk.Release()
}
