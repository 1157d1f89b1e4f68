package httpboot

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/metrics/metricstest"
)

// TestMetricsLoopback downloads over a real HTTP connection (so files go
// out through ReadFrom, i.e. sendfile) and checks the counts and bytes.
func TestMetricsLoopback(t *testing.T) {
	s, _, kernel := newTestServer(t, testHosts)
	reg := metrics.New()
	ts := httptest.NewServer(metered(reg, s))
	defer ts.Close()
	fetch := func(path string, hdr ...string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", ts.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	fetch("/files/vet/vmlinuz")
	if code := fetch("/files/vet/vmlinuz", "Range", "bytes=100-199"); code != http.StatusPartialContent {
		t.Fatalf("Range request = %d, want 206", code)
	}
	fetch("/files/missing")
	fetch("/healthz")

	fams := metricstest.Scrape(t, reg)
	for _, c := range []struct {
		fam  string
		kv   []string
		want float64
	}{
		{"kiln_httpboot_requests_total", []string{"kind", "file", "code", "2xx"}, 2},
		{"kiln_httpboot_requests_total", []string{"kind", "file", "code", "4xx"}, 1},
		{"kiln_httpboot_requests_total", []string{"kind", "other", "code", "2xx"}, 1},
		{"kiln_httpboot_sent_bytes_total", []string{"kind", "file"}, float64(len(kernel) + 100 + len("404 page not found\n"))},
	} {
		if got := fams.Value(c.fam, c.kv...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.fam, c.kv, got, c.want)
		}
	}
}

func TestPathKind(t *testing.T) {
	for in, want := range map[string]string{
		"/boot/52:54:00:00:00:0a.ipxe": "script", "/files/vet/vmlinuz": "file", "/ipxe/ipxe.efi": "ipxe",
		"/vet/v1/hello": "vet_agent", "/healthz": "other", "/../x": "other",
	} {
		if got := pathKind(in); got != want {
			t.Errorf("pathKind(%q) = %q, want %q", in, got, want)
		}
	}
}
