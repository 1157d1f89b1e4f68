package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/metrics/metricstest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.txt")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./services/metrics -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

func TestWriteText(t *testing.T) {
	r := metrics.New()
	r.Counter("kiln_things_total", "Things seen.").Add(3)
	r.Gauge("kiln_temperature_celsius", "A gauge with a fraction.").Set(-21.5)
	v := r.CounterVec("kiln_requests_total", "Requests by type and result,\nwith a newline and a \\ in the help.", "type", "result")
	v.With("discover", "ok").Inc()
	v.With("discover", "ok").Inc()
	v.With("request", "nak").Add(7)
	v.With(`we"ird\`, "line\nbreak").Inc()
	g := r.GaugeVec("kiln_pool_addresses", "Addresses per pool.", "subnet")
	g.With("lab").Set(100)
	g.With("b-net").Set(math.Inf(1))
	r.Gauge("kiln_big", "Large values take an exponent.").Set(1e300)
	r.GaugeVec("kiln_empty", "A vector without series yet.", "x")
	r.CollectFunc("kiln_collected", "Computed at scrape.", metrics.KindGauge, []string{"slot"}, func(context.Context) ([]metrics.Sample, error) {
		return []metrics.Sample{{LabelValues: []string{"b"}, Value: 2}, {LabelValues: []string{"a"}, Value: 1}}, nil
	})
	var b bytes.Buffer
	if err := r.WriteText(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	golden(t, "write.txt", b.Bytes())
	fams := metricstest.Parse(t, b.Bytes())
	for _, c := range []struct {
		fam    string
		labels []string
		want   float64
	}{
		{"kiln_things_total", nil, 3},
		{"kiln_temperature_celsius", nil, -21.5},
		{"kiln_requests_total", []string{"type", "discover", "result", "ok"}, 2},
		{"kiln_requests_total", []string{"type", "request", "result", "nak"}, 7},
		{"kiln_requests_total", []string{"type", `we"ird\`, "result", "line\nbreak"}, 1},
		{"kiln_pool_addresses", []string{"subnet", "b-net"}, math.Inf(1)},
		{"kiln_big", nil, 1e300},
		{"kiln_collected", []string{"slot", "a"}, 1},
	} {
		if got := fams.Value(c.fam, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.fam, c.labels, got, c.want)
		}
	}
	if got := fams["kiln_requests_total"].GetHelp(); got != "Requests by type and result,\nwith a newline and a \\ in the help." {
		t.Errorf("help = %q", got)
	}
}

func TestCollectFailureLeavesOthers(t *testing.T) {
	r := metrics.New()
	r.Counter("kiln_ok_total", "Fine.").Inc()
	boom := errors.New("database is locked")
	r.CollectFunc("kiln_broken", "Fails.", metrics.KindGauge, nil, func(context.Context) ([]metrics.Sample, error) { return nil, boom })
	r.CollectFunc("kiln_wrong_labels", "Returns too many label values.", metrics.KindGauge, []string{"a"}, func(context.Context) ([]metrics.Sample, error) {
		return []metrics.Sample{{LabelValues: []string{"x", "y"}}}, nil
	})
	var b bytes.Buffer
	err := r.WriteText(context.Background(), &b)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "kiln_broken") || !strings.Contains(err.Error(), "kiln_wrong_labels") {
		t.Errorf("WriteText error = %v, want both failing families named", err)
	}
	fams := metricstest.Parse(t, b.Bytes())
	if fams["kiln_ok_total"] == nil || fams["kiln_broken"] != nil || fams["kiln_wrong_labels"] != nil {
		t.Errorf("families = %v, want only kiln_ok_total", keys(fams))
	}
}

func keys(m metricstest.Families) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestRegisterAgainReturnsSame(t *testing.T) {
	r := metrics.New()
	a := r.CounterVec("kiln_x_total", "X.", "k")
	a.With("v").Inc()
	b := r.CounterVec("kiln_x_total", "X.", "k")
	b.With("v").Inc()
	if got := a.With("v").Value(); got != 2 {
		t.Errorf("after registering twice, count = %d, want 2 (one series)", got)
	}
	calls := 0
	r.CollectFunc("kiln_c", "C.", metrics.KindGauge, nil, func(context.Context) ([]metrics.Sample, error) { calls += 10; return nil, nil })
	r.CollectFunc("kiln_c", "C.", metrics.KindGauge, nil, func(context.Context) ([]metrics.Sample, error) { calls++; return nil, nil })
	r.WriteText(context.Background(), &bytes.Buffer{})
	if calls != 1 {
		t.Errorf("CollectFunc registered twice: calls = %d, want 1 (the newer function only)", calls)
	}
}

func TestRegisterRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		fn   func(r *metrics.Registry)
	}{
		{"bad name", func(r *metrics.Registry) { r.Gauge("kiln-dash", "x") }},
		{"counter without _total", func(r *metrics.Registry) { r.Counter("kiln_requests", "x") }},
		{"bad label", func(r *metrics.Registry) { r.GaugeVec("kiln_g", "x", "1st") }},
		{"reserved label", func(r *metrics.Registry) { r.GaugeVec("kiln_g", "x", "__name") }},
		{"too many labels", func(r *metrics.Registry) { r.GaugeVec("kiln_g", "x", "a", "b", "c", "d", "e") }},
		{"kind clash", func(r *metrics.Registry) { r.Gauge("kiln_x_total", "x"); r.Counter("kiln_x_total", "x") }},
		{"label clash", func(r *metrics.Registry) { r.GaugeVec("kiln_g", "x", "a"); r.GaugeVec("kiln_g", "x", "b") }},
		{"wrong value count", func(r *metrics.Registry) { r.GaugeVec("kiln_g", "x", "a", "b").With("only-one") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic")
				}
			}()
			c.fn(metrics.New())
		})
	}
}

func TestVectorBounded(t *testing.T) {
	r := metrics.New()
	v := r.CounterVec("kiln_by_client_total", "Keyed by something a client controls.", "client")
	for i := range metrics.MaxSeries + 100 {
		v.With(fmt.Sprintf("c%d", i)).Inc()
	}
	var b bytes.Buffer
	r.WriteText(context.Background(), &b)
	fams := metricstest.Parse(t, b.Bytes())
	if n := len(fams["kiln_by_client_total"].GetMetric()); n != metrics.MaxSeries+1 {
		t.Errorf("series = %d, want %d (MaxSeries and the overflow series)", n, metrics.MaxSeries+1)
	}
	if got := fams.Value("kiln_by_client_total", "client", metrics.Overflow); got != 100 {
		t.Errorf("overflow series = %v, want 100", got)
	}
	if got := fams.Value("kiln_by_client_total", "client", "c7"); got != 1 {
		t.Errorf("an early series = %v, want 1", got)
	}
}

func TestGaugeAddConcurrent(t *testing.T) {
	var g metrics.Gauge
	done := make(chan bool)
	for range 8 {
		go func() {
			for range 1000 {
				g.Add(0.5)
			}
			done <- true
		}()
	}
	for range 8 {
		<-done
	}
	if g.Value() != 4000 {
		t.Errorf("Value = %v, want 4000", g.Value())
	}
}

// TestCollectFuncReplacedWhileScraped runs under -race in make test.
func TestCollectFuncReplacedWhileScraped(t *testing.T) {
	r := metrics.New()
	fn := func(context.Context) ([]metrics.Sample, error) { return []metrics.Sample{{Value: 1}}, nil }
	r.CollectFunc("kiln_c", "C.", metrics.KindGauge, nil, fn)
	done := make(chan bool)
	go func() {
		for range 200 {
			r.CollectFunc("kiln_c", "C.", metrics.KindGauge, nil, fn)
		}
		done <- true
	}()
	for range 200 {
		r.WriteText(context.Background(), &bytes.Buffer{})
	}
	<-done
}
