// Package metricstest reads expositions in tests with Prometheus' own text
// parser, so kiln's writer is checked by the reference implementation.
package metricstest

import (
	"bytes"
	"context"
	"math"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"kiln.dev/kiln/services/metrics"
)

// Families are parsed metric families by name.
type Families map[string]*dto.MetricFamily

// Parse parses text, failing t when Prometheus' parser refuses it.
func Parse(t testing.TB, text []byte) Families {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus' text parser refuses the exposition: %v\n%s", err, text)
	}
	return fams
}

// Scrape writes reg and parses the result.
func Scrape(t testing.TB, reg *metrics.Registry) Families {
	t.Helper()
	var b bytes.Buffer
	if err := reg.WriteText(context.Background(), &b); err != nil {
		t.Fatalf("WriteText: %v", err)
	}
	return Parse(t, b.Bytes())
}

// Value is the counter or gauge value of family name's series whose labels
// are exactly the name/value pairs kv, or NaN when there is none.
func (f Families) Value(name string, kv ...string) float64 {
next:
	for _, m := range f[name].GetMetric() {
		if len(m.GetLabel())*2 != len(kv) {
			continue
		}
		for _, l := range m.GetLabel() {
			found := false
			for i := 0; i+1 < len(kv); i += 2 {
				found = found || kv[i] == l.GetName() && kv[i+1] == l.GetValue()
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		}
	}
	return math.NaN()
}
