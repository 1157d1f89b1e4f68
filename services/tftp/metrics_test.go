package tftp

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/metrics/metricstest"
)

// TestMetricsLoopback fetches and is refused with pin/tftp's client and
// checks what the server counted.
func TestMetricsLoopback(t *testing.T) {
	root := ipxeRoot(t)
	reg := metrics.New()
	srv := startServer(t, Options{Root: root, Metrics: reg})
	want, _ := os.ReadFile(filepath.Join(root, "ipxe.efi"))
	if _, _, err := pinGet(t, srv.addr, "ipxe.efi", 1428); err != nil {
		t.Fatal(err)
	}
	pinGet(t, srv.addr, "missing.efi", 0)
	pinGet(t, srv.addr, "../etc/passwd", 0)
	// The counters move before the event is stored.
	waitEvent(t, srv, "ipxe.efi", func(ev Event) bool { return ev.Err == "" })
	waitEvent(t, srv, "missing.efi", func(Event) bool { return true })
	waitEvent(t, srv, "../etc/passwd", func(Event) bool { return true })

	fams := metricstest.Scrape(t, reg)
	for _, c := range []struct {
		fam  string
		kv   []string
		want float64
	}{
		{"kiln_tftp_requests_total", []string{"result", "ok"}, 1},
		{"kiln_tftp_requests_total", []string{"result", "not_found"}, 1},
		{"kiln_tftp_requests_total", []string{"result", "denied"}, 1},
		{"kiln_tftp_sent_bytes_total", nil, float64(len(want))},
		{"kiln_tftp_transfers", nil, 0},
		{"kiln_tftp_dropped_total", nil, 0},
	} {
		if got := fams.Value(c.fam, c.kv...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.fam, c.kv, got, c.want)
		}
	}
}

func TestResult(t *testing.T) {
	for err, want := range map[error]string{
		nil: "ok", ErrNotFound: "not_found", ErrAccess: "denied", ErrBusy: "busy", ErrReadOnly: "refused",
		fmt.Errorf("sending x: %w", ErrClientAbort): "aborted", fmt.Errorf("sending x: %w", ErrTimeout): "timeout",
		ErrFileChanged: "failed",
	} {
		if got := result(err); got != want {
			t.Errorf("result(%v) = %q, want %q", err, got, want)
		}
	}
}
