package boottest

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/qemu"
)

// bootRun is one measured boot.
type bootRun struct {
	total  time.Duration
	phases []Phase
}

// measure boots disk until done matches and returns the time from QEMU's
// start and the phases. The VM is left running for the caller.
func measure(b *testing.B, ctx context.Context, img, disk string, done *regexp.Regexp, markers []Marker) (*qemu.VM, bootRun) {
	b.Helper()
	vm := NewVM(b, ctx, img, VMOptions{Disk: disk})
	l, err := vm.ExpectLine(ctx, done, BootTimeout())
	if err != nil {
		b.Fatal(err)
	}
	return vm, bootRun{total: l.At.Sub(vm.Started()), phases: Phases(vm.Started(), vm.Lines(), markers)}
}

// BenchmarkBoot measures firmware → "kiln: ready" for the appliance (first
// boot on a fresh overlay, and the next, warm boot) against the same chain
// with a hello-world /init (the baseline image), $KILN_BENCH_RUNS times
// (default 3), and prints medians per phase and the ratios. Build the
// baseline with qemu/bench-boot.sh.
func BenchmarkBoot(b *testing.B) {
	img := Image(b)
	runs := 3
	if n, err := strconv.Atoi(os.Getenv("KILN_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(runs)*3*BootTimeout())
	defer cancel()

	baseline := BaselineImage()
	if baseline == "" {
		b.Logf("no baseline image (build it with qemu/bench-boot.sh or set KILN_BASELINE_IMAGE): ratios skipped")
	}
	// Runs alternate between the images so that load from other processes on
	// the machine spreads over all columns alike.
	var first, warm, base []bootRun
	for i := 0; i < runs; i++ {
		overlay := NewOverlay(b, img, "2G")
		vm, r := measure(b, ctx, img, overlay, ReadyRE, KilnMarkers)
		first = append(first, r)
		sctx, scancel := context.WithTimeout(ctx, 90*time.Second)
		err := vm.Shutdown(sctx)
		scancel()
		vm.Close()
		if err != nil {
			b.Logf("run %d: no clean poweroff, warm boot skipped: %v", i+1, err)
		} else {
			vm, r = measure(b, ctx, img, overlay, ReadyRE, KilnMarkers)
			warm = append(warm, r)
			vm.Close()
		}
		if baseline != "" {
			vm, r := measure(b, ctx, baseline, NewOverlay(b, baseline, ""), BaselineRE, BaselineMarkers)
			base = append(base, r)
			vm.Close()
		}
	}

	report(os.Stdout, runs, []column{{"kiln first boot", first}, {"kiln warm boot", warm}, {"baseline hello", base}})
	b.ReportMetric(0, "ns/op")
	if len(first) > 0 {
		b.ReportMetric(median(totals(first)).Seconds(), "s-ready-first")
	}
	if len(warm) > 0 {
		b.ReportMetric(median(totals(warm)).Seconds(), "s-ready-warm")
	}
	if len(base) > 0 {
		mb := median(totals(base))
		b.ReportMetric(mb.Seconds(), "s-baseline")
		if len(warm) > 0 {
			b.ReportMetric(float64(median(totals(warm)))/float64(mb), "ratio-warm")
		}
		if len(first) > 0 {
			b.ReportMetric(float64(median(totals(first)))/float64(mb), "ratio-first")
		}
	}
}

type column struct {
	name string
	runs []bootRun
}

func totals(rs []bootRun) []time.Duration {
	var out []time.Duration
	for _, r := range rs {
		out = append(out, r.total)
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// report prints the median of each phase per column, the totals and the
// ratios to the baseline (the last column).
func report(w io.Writer, runs int, cols []column) {
	var names []string
	for _, c := range cols {
		for _, r := range c.runs {
			for _, p := range r.phases {
				if !slices.Contains(names, p.Name) {
					names = append(names, p.Name)
				}
			}
		}
	}
	fmt.Fprintf(w, "\nboot time under TCG, median of %d runs, seconds from QEMU start:\n", runs)
	fmt.Fprintf(w, "%-44s", "phase")
	for _, c := range cols {
		fmt.Fprintf(w, " %16s", c.name)
	}
	fmt.Fprintln(w)
	cell := func(rs []bootRun, f func(bootRun) (time.Duration, bool)) string {
		var ds []time.Duration
		for _, r := range rs {
			if d, ok := f(r); ok {
				ds = append(ds, d)
			}
		}
		if len(ds) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", median(ds).Seconds())
	}
	for _, n := range names {
		fmt.Fprintf(w, "%-44s", n)
		for _, c := range cols {
			fmt.Fprintf(w, " %16s", cell(c.runs, func(r bootRun) (time.Duration, bool) {
				for _, p := range r.phases {
					if p.Name == n {
						return p.Dur, true
					}
				}
				return 0, false
			}))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%-44s", "total (to kiln: ready / kiln-baseline: hello)")
	for _, c := range cols {
		fmt.Fprintf(w, " %16s", cell(c.runs, func(r bootRun) (time.Duration, bool) { return r.total, true }))
	}
	fmt.Fprintln(w)
	base := cols[len(cols)-1]
	if len(base.runs) == 0 {
		return
	}
	mb := median(totals(base.runs))
	var parts []string
	for _, c := range cols[:len(cols)-1] {
		if len(c.runs) > 0 {
			m := median(totals(c.runs))
			parts = append(parts, fmt.Sprintf("%s %.2fx (+%.2fs)", c.name, float64(m)/float64(mb), (m-mb).Seconds()))
		}
	}
	fmt.Fprintf(w, "ratio to baseline: %s\n\n", strings.Join(parts, ", "))
}
