package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Kind is a family's Prometheus type.
type Kind string

// The kinds kiln exports.
const (
	KindCounter Kind = "counter"
	KindGauge   Kind = "gauge"
)

// ContentType is the text exposition format's media type.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// MaxLabels is the most label names a family may have.
const MaxLabels = 4

// MaxSeries bounds the series of one vector; label values beyond it are
// counted in the series whose labels are all Overflow.
const MaxSeries = 512

// Overflow is the label value of the series that takes what did not fit.
const Overflow = "overflow"

var (
	nameRE  = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// Registry holds metric families by name. Its methods are safe for
// concurrent use. Registering a family that exists with the same kind, help
// and labels returns the existing one (a service restarted in one process
// keeps counting); any other clash is a programming error and panics.
type Registry struct {
	// mu guards families.
	mu       sync.Mutex
	families map[string]*family
}

// New returns an empty registry.
func New() *Registry { return &Registry{families: map[string]*family{}} }

// family is one metric name with its series.
type family struct {
	name, help string
	kind       Kind
	labels     []string
	// Exactly one of these is set.
	counter *Counter
	gauge   *Gauge
	cvec    *vec[Counter]
	gvec    *vec[Gauge]
	collect func(context.Context) ([]Sample, error)
}

// Sample is one series of a family computed at scrape time.
type Sample struct {
	// LabelValues are in the order of the family's label names.
	LabelValues []string
	Value       float64
}

// register returns the family called name, creating it with mk.
func (r *Registry) register(name, help string, kind Kind, labels []string, mk func(*family)) *family {
	if !nameRE.MatchString(name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", name))
	}
	if kind == KindCounter && !strings.HasSuffix(name, "_total") {
		panic(fmt.Sprintf("metrics: counter %q: counter names end in _total", name))
	}
	if len(labels) > MaxLabels {
		panic(fmt.Sprintf("metrics: %s: at most %d labels", name, MaxLabels))
	}
	for _, l := range labels {
		if !labelRE.MatchString(l) || strings.HasPrefix(l, "__") {
			panic(fmt.Sprintf("metrics: %s: invalid label name %q", name, l))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.families[name]; ok {
		if f.kind != kind || f.help != help || !slices.Equal(f.labels, labels) {
			panic(fmt.Sprintf("metrics: %s registered twice with different kind, help or labels", name))
		}
		mk(f) // keeps existing series; a CollectFunc gets the new function
		return f
	}
	f := &family{name: name, help: help, kind: kind, labels: slices.Clone(labels)}
	mk(f)
	r.families[name] = f
	return f
}

// Counter registers a counter without labels. Names end in _total.
func (r *Registry) Counter(name, help string) *Counter {
	return r.register(name, help, KindCounter, nil, func(f *family) {
		if f.counter == nil {
			f.counter = new(Counter)
		}
	}).counter
}

// Gauge registers a gauge without labels.
func (r *Registry) Gauge(name, help string) *Gauge {
	return r.register(name, help, KindGauge, nil, func(f *family) {
		if f.gauge == nil {
			f.gauge = new(Gauge)
		}
	}).gauge
}

// CounterVec registers a counter with labels.
func (r *Registry) CounterVec(name, help string, labels ...string) *CounterVec {
	if len(labels) == 0 {
		panic(fmt.Sprintf("metrics: CounterVec %s without labels: use Counter", name))
	}
	return &CounterVec{r.register(name, help, KindCounter, labels, func(f *family) {
		if f.cvec == nil {
			f.cvec = newVec[Counter](len(labels))
		}
	}).cvec}
}

// GaugeVec registers a gauge with labels.
func (r *Registry) GaugeVec(name, help string, labels ...string) *GaugeVec {
	if len(labels) == 0 {
		panic(fmt.Sprintf("metrics: GaugeVec %s without labels: use Gauge", name))
	}
	return &GaugeVec{r.register(name, help, KindGauge, labels, func(f *family) {
		if f.gvec == nil {
			f.gvec = newVec[Gauge](len(labels))
		}
	}).gvec}
}

// CollectFunc registers a family computed by fn at every scrape (from a
// database, the file system, another process). An error leaves the family
// out of that scrape and is returned by WriteText. Registering the name again
// replaces fn.
func (r *Registry) CollectFunc(name, help string, kind Kind, labels []string, fn func(context.Context) ([]Sample, error)) {
	if fn == nil {
		panic("metrics: CollectFunc " + name + " with a nil function")
	}
	r.register(name, help, kind, labels, func(f *family) { f.collect = fn })
}

// Counter is a monotonically increasing count.
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value is the current count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge is a value that goes up and down.
type Gauge struct{ bits atomic.Uint64 }

// Set sets the value.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds d (which may be negative).
func (g *Gauge) Add(d float64) {
	for {
		old := g.bits.Load()
		if g.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// Value is the current value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// CounterVec is a counter per combination of label values.
type CounterVec struct{ v *vec[Counter] }

// With returns the counter of these label values (one per label name, in
// order). Keep the result on hot paths where the values are fixed.
func (c *CounterVec) With(values ...string) *Counter { return c.v.with(values) }

// GaugeVec is a gauge per combination of label values.
type GaugeVec struct{ v *vec[Gauge] }

// With returns the gauge of these label values.
func (g *GaugeVec) With(values ...string) *Gauge { return g.v.with(values) }

// Reset removes every series (for gauges that describe a current set, such
// as one series per configured subnet).
func (g *GaugeVec) Reset() { g.v.reset() }

// labelKey holds a series' label values; an array, so a lookup does not
// allocate.
type labelKey [MaxLabels]string

// vec is the series of a labelled family.
type vec[T any] struct {
	n int // label names

	// mu guards children and overflow.
	mu       sync.RWMutex
	children map[labelKey]*T
	overflow *T
}

func newVec[T any](n int) *vec[T] { return &vec[T]{n: n, children: map[labelKey]*T{}} }

func (v *vec[T]) with(values []string) *T {
	if len(values) != v.n {
		panic(fmt.Sprintf("metrics: %d label values for %d labels", len(values), v.n))
	}
	var k labelKey
	copy(k[:], values)
	v.mu.RLock()
	c, ok := v.children[k]
	v.mu.RUnlock()
	if ok {
		return c
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if c, ok := v.children[k]; ok {
		return c
	}
	if len(v.children) >= MaxSeries {
		if v.overflow == nil {
			v.overflow = new(T)
		}
		return v.overflow
	}
	c = new(T)
	v.children[k] = c
	return c
}

func (v *vec[T]) reset() {
	v.mu.Lock()
	defer v.mu.Unlock()
	clear(v.children)
	v.overflow = nil
}

// series returns every child with its label values.
func (v *vec[T]) series(value func(*T) float64) []Sample {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]Sample, 0, len(v.children)+1)
	for k, c := range v.children {
		out = append(out, Sample{LabelValues: slices.Clone(k[:v.n]), Value: value(c)})
	}
	if v.overflow != nil {
		lv := make([]string, v.n)
		for i := range lv {
			lv[i] = Overflow
		}
		out = append(out, Sample{LabelValues: lv, Value: value(v.overflow)})
	}
	return out
}

func counterValue(c *Counter) float64 { return float64(c.Value()) }
func gaugeValue(g *Gauge) float64     { return g.Value() }

// samples returns the family's series now; collect is f.collect as read
// under the registry's lock (CollectFunc may replace it).
func (f *family) samples(ctx context.Context, collect func(context.Context) ([]Sample, error)) ([]Sample, error) {
	switch {
	case f.counter != nil:
		return []Sample{{Value: counterValue(f.counter)}}, nil
	case f.gauge != nil:
		return []Sample{{Value: f.gauge.Value()}}, nil
	case f.cvec != nil:
		return f.cvec.series(counterValue), nil
	case f.gvec != nil:
		return f.gvec.series(gaugeValue), nil
	}
	ss, err := collect(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range ss {
		if len(s.LabelValues) != len(f.labels) {
			return nil, fmt.Errorf("%d label values for labels %v", len(s.LabelValues), f.labels)
		}
	}
	return ss, nil
}

// Names returns the registered family names, sorted.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.families))
	for n := range r.families {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// WriteText writes every family in the text exposition format, sorted by
// name, each family's series sorted by label values. A family whose
// CollectFunc fails is left out; the failures are returned together after
// the rest was written.
func (r *Registry) WriteText(ctx context.Context, w io.Writer) error {
	type snap struct {
		f       *family
		collect func(context.Context) ([]Sample, error)
	}
	r.mu.Lock()
	fams := make([]snap, 0, len(r.families))
	for _, f := range r.families {
		fams = append(fams, snap{f, f.collect})
	}
	r.mu.Unlock()
	slices.SortFunc(fams, func(a, b snap) int { return strings.Compare(a.f.name, b.f.name) })

	var buf bytes.Buffer
	var errs []error
	for _, s := range fams {
		f := s.f
		ss, err := f.samples(ctx, s.collect)
		if err != nil {
			errs = append(errs, fmt.Errorf("collecting %s: %w", f.name, err))
			continue
		}
		writeFamily(&buf, f.name, f.help, f.kind, f.labels, ss)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// writeFamily appends one family in the text format.
func writeFamily(b *bytes.Buffer, name, help string, kind Kind, labels []string, ss []Sample) {
	slices.SortFunc(ss, func(a, b Sample) int { return slices.Compare(a.LabelValues, b.LabelValues) })
	b.WriteString("# HELP ")
	b.WriteString(name)
	b.WriteByte(' ')
	b.WriteString(escapeHelp(help))
	b.WriteString("\n# TYPE ")
	b.WriteString(name)
	b.WriteByte(' ')
	b.WriteString(string(kind))
	b.WriteByte('\n')
	for _, s := range ss {
		b.WriteString(name)
		if len(labels) > 0 {
			b.WriteByte('{')
			for i, l := range labels {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(l)
				b.WriteString(`="`)
				b.WriteString(escapeLabel(s.LabelValues[i]))
				b.WriteByte('"')
			}
			b.WriteByte('}')
		}
		b.WriteByte(' ')
		b.WriteString(formatValue(s.Value))
		b.WriteByte('\n')
	}
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// formatValue spells a value as Prometheus does: integers without an
// exponent up to 2^53, Inf and NaN by name.
func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	case v == math.Trunc(v) && math.Abs(v) < 1<<53:
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
