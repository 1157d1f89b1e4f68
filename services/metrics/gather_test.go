package metrics_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/metrics/metricstest"
)

func TestMerge(t *testing.T) {
	for _, c := range []struct {
		name        string
		seen        []string
		in          string
		want        string
		wantDropped []string
	}{
		{
			name: "keeps new families",
			in:   "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n",
			want: "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n",
		},
		{
			name:        "drops a seen family with its samples and comments",
			seen:        []string{"a_total"},
			in:          "# HELP a_total A.\n# TYPE a_total counter\n# a note\na_total{x=\"1\"} 1\n# HELP b B.\n# TYPE b gauge\nb 2\n",
			want:        "# HELP b B.\n# TYPE b gauge\nb 2\n",
			wantDropped: []string{"a_total"},
		},
		{
			name: "samples without HELP or TYPE are a family of their own",
			seen: []string{"a"},
			in:   "a 1\nc 3\n",
			want: "c 3\n",

			wantDropped: []string{"a"},
		},
		{
			name: "suffixed samples stay with their family; no final newline",
			seen: []string{"h"},
			in:   "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n# TYPE g gauge\ng 1",
			want: "# TYPE g gauge\ng 1\n",

			wantDropped: []string{"h"},
		},
		{
			name: "blank lines and stray comments go",
			in:   "\n#comment\n# TYPE g gauge\n\ng 1\n",
			want: "# TYPE g gauge\ng 1\n",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			seen := map[string]bool{}
			for _, s := range c.seen {
				seen[s] = true
			}
			var b bytes.Buffer
			dropped := metrics.Merge(&b, []byte(c.in), seen)
			if diff := cmp.Diff(c.want, b.String()); diff != "" {
				t.Errorf("Merge output (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.wantDropped, dropped); diff != "" {
				t.Errorf("Merge dropped (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzMerge(f *testing.F) {
	f.Add([]byte("# HELP a_total A.\n# TYPE a_total counter\na_total 1\nb{x=\"y\"} 2\n"))
	f.Add([]byte("#\n# \n# HELP\n{\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		seen := map[string]bool{}
		var b bytes.Buffer
		metrics.Merge(&b, in, seen)
		// Merging the output again after a reset changes nothing.
		var again bytes.Buffer
		metrics.Merge(&again, b.Bytes(), map[string]bool{})
		if !bytes.Equal(b.Bytes(), again.Bytes()) {
			t.Errorf("Merge is not stable:\n%q\n%q", b.Bytes(), again.Bytes())
		}
	})
}

// serve runs ServeUnix for r at dir/name.sock until the test ends.
func serve(t *testing.T, r *metrics.Registry, dir, name string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	path := filepath.Join(dir, name+".sock")
	go func() { done <- metrics.ServeUnix(ctx, r, path, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeUnix: %v", err)
		}
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("socket %s left behind (%v)", path, err)
		}
	})
	for range 200 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never accepted", path)
}

func TestGatherer(t *testing.T) {
	dir := t.TempDir()
	local := metrics.New()
	local.Gauge("kiln_build_info", "Build.").Set(1)
	dhcp := metrics.New()
	dhcp.CounterVec("kiln_dhcp_requests_total", "Requests.", "subnet", "type").With("lab", "discover").Add(2)
	dhcp.Gauge("kiln_build_info", "A family another source owns: dropped.").Set(99)
	dns := metrics.New()
	dns.Counter("kiln_dns_cache_hits_total", "Hits.").Add(5)
	serve(t, dhcp, dir, "dhcp")
	serve(t, dns, dir, "dns")
	serve(t, metrics.New(), dir, "mgmt") // the local registry's own socket is not scraped
	// A service that died and left its socket behind.
	ln, err := net.Listen("unix", filepath.Join(dir, "tftp.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a socket"), 0o600)

	g := &metrics.Gatherer{Local: local, LocalName: "mgmt", Dir: dir, Timeout: time.Second}
	var b bytes.Buffer
	g.WriteText(context.Background(), &b)
	fams := metricstest.Parse(t, b.Bytes())
	for _, c := range []struct {
		fam    string
		labels []string
		want   float64
	}{
		{"kiln_build_info", nil, 1},
		{"kiln_dhcp_requests_total", []string{"subnet", "lab", "type", "discover"}, 2},
		{"kiln_dns_cache_hits_total", nil, 5},
		{metrics.SourceUpFamily, []string{"source", "mgmt"}, 1},
		{metrics.SourceUpFamily, []string{"source", "dhcp"}, 1},
		{metrics.SourceUpFamily, []string{"source", "dns"}, 1},
		{metrics.SourceUpFamily, []string{"source", "tftp"}, 0},
	} {
		if got := fams.Value(c.fam, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v\n%s", c.fam, c.labels, got, c.want, b.String())
		}
	}
	if n := len(fams[metrics.SourceUpFamily].GetMetric()); n != 4 {
		t.Errorf("%s has %d series, want 4 (mgmt, dhcp, dns, tftp)", metrics.SourceUpFamily, n)
	}
}
