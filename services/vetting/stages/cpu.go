package stages

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/services/vetting/verdict"
)

// CPU loads every CPU the agent may run on with a workload whose results are
// known in advance, and counts results that differ: a miscompare is a
// hardware fault. Each worker is pinned to one CPU so every core is
// exercised. Thermal throttle and machine-check counters are compared before
// and after.
type CPU struct {
	// Duration is how long the load runs.
	Duration time.Duration `json:"duration"`
	// Workers is how many CPUs to load; 0 means every CPU in the affinity
	// mask.
	Workers int `json:"workers,omitempty"`
}

// Name implements Stage.
func (CPU) Name() string { return "cpu" }

// cpuSeeds is how many distinct work units the workers cycle through; each
// has its reference result computed once before the load starts.
const cpuSeeds = 16

// workUnit mixes integer/SHA work with floating-point matrix work, so both
// the integer and vector/FPU paths are checked.
func workUnit(seed uint64, buf []byte, a, b, c []float64) [40]byte {
	x := seed*0x9e3779b97f4a7c15 + 1
	next := func() uint64 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return x
	}
	for i := 0; i+8 <= len(buf); i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], next())
	}
	sum := sha256.Sum256(buf)
	for r := 0; r < 3; r++ {
		copy(buf, sum[:])
		sum = sha256.Sum256(buf)
	}
	const n = 32
	for i := range a {
		a[i] = float64(next()%2048)/1024 - 1
		b[i] = float64(next()%2048)/1024 + 0.5
	}
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for k := 0; k < n; k++ {
				s += a[i*n+k] * b[k*n+j]
			}
			c[i*n+j] = math.Sqrt(math.Abs(s)) + s/3
		}
	}
	var acc float64
	for _, v := range c {
		acc = acc*1.0000001 + v
	}
	var out [40]byte
	copy(out[:], sum[:])
	binary.LittleEndian.PutUint64(out[32:], math.Float64bits(acc))
	return out
}

type cpuScratch struct {
	buf     []byte
	a, b, c []float64
}

func newScratch() *cpuScratch {
	return &cpuScratch{buf: make([]byte, 64<<10), a: make([]float64, 32*32), b: make([]float64, 32*32), c: make([]float64, 32*32)}
}

// Run implements Stage.
func (s CPU) Run(ctx context.Context, env Env) ([]verdict.Measurement, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("reading the CPU affinity mask: %w", err)
	}
	var cpus []int
	for i := 0; i < 8192 && len(cpus) < set.Count(); i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if s.Workers > 0 && s.Workers < len(cpus) {
		cpus = cpus[:s.Workers]
	}
	if len(cpus) == 0 {
		return nil, fmt.Errorf("the affinity mask names no CPU")
	}

	sc := newScratch()
	var ref [cpuSeeds][40]byte
	for i := range ref {
		ref[i] = workUnit(uint64(i), sc.buf, sc.a, sc.b, sc.c)
	}
	throttleBefore, mceBefore := throttleCount(env.Root), interruptCount(env.Root, "MCE")

	lctx, cancel := context.WithTimeout(ctx, s.Duration)
	defer cancel()
	units := make([]int64, len(cpus))
	var errorsSeen atomic.Int64
	var pinErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w, cpu := range cpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The worker exits still locked, so Go ends its thread rather than
			// reuse it with a one-CPU affinity mask.
			runtime.LockOSThread()
			var one unix.CPUSet
			one.Set(cpu)
			if err := unix.SchedSetaffinity(0, &one); err != nil {
				pinErr.Store(fmt.Errorf("pinning a worker to CPU %d: %w", cpu, err))
			}
			sc := newScratch()
			for i := uint64(w); ; i++ {
				if i%8 == 0 && lctx.Err() != nil {
					return
				}
				if workUnit(i%cpuSeeds, sc.buf, sc.a, sc.b, sc.c) != ref[i%cpuSeeds] {
					errorsSeen.Add(1)
				}
				units[w]++
			}
		}()
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
				env.Progress(math.Min(1, float64(time.Since(start))/float64(s.Duration)), "loading every CPU")
			}
		}
	}()
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	var total int64
	var exercised int
	rates := make([]float64, 0, len(units))
	for _, u := range units {
		total += u
		if u > 0 {
			exercised++
		}
		rates = append(rates, float64(u)/elapsed.Seconds())
	}
	sort.Float64s(rates)
	ms := []verdict.Measurement{
		verdict.Measure("cpu.compute_errors", float64(errorsSeen.Load()), "",
			verdict.Must(verdict.OpEQ, 0, "every result matches the reference computation")),
		verdict.Measure("cpu.cores_exercised", float64(exercised), "",
			verdict.Must(verdict.OpGE, float64(len(cpus)), fmt.Sprintf("all %d CPUs ran the workload", len(cpus)))),
		{Name: "cpu.units_per_second", Value: float64(total) / elapsed.Seconds(), Unit: "units/s", Better: verdict.Higher},
		{Name: "cpu.slowest_cpu_ratio", Value: rates[0] / math.Max(rates[len(rates)/2], 1e-9)},
	}
	if d, ok := delta(throttleBefore, throttleCount(env.Root)); ok {
		ms = append(ms, verdict.Measure("cpu.throttle_events", float64(d), "",
			verdict.Should(verdict.OpEQ, 0, "no thermal throttling under load")))
	} else {
		ms = append(ms, verdict.Skip("cpu.throttle_events", "no thermal_throttle counters in sysfs (virtual machine or a CPU without them)"))
	}
	if d, ok := delta(mceBefore, interruptCount(env.Root, "MCE")); ok {
		ms = append(ms, verdict.Measure("cpu.machine_checks", float64(d), "",
			verdict.Must(verdict.OpEQ, 0, "no machine check exceptions under load")))
	} else {
		ms = append(ms, verdict.Skip("cpu.machine_checks", "no MCE row in /proc/interrupts (machine checks not reported by this kernel)"))
	}
	if err, _ := pinErr.Load().(error); err != nil {
		env.Logger.Warn("workers not pinned; the OS scheduler placed them", "error", err)
	}
	return ms, nil
}
