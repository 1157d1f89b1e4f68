package stages

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/services/vetting/inventory"
	"kiln.dev/kiln/services/vetting/verdict"
)

// MinHeadroom is the least memory the memory stage leaves free, so the agent,
// the kernel and the network stack keep working while it runs.
const MinHeadroom = 256 << 20

// Memory writes patterns over most of the free memory and reads them back;
// any word that reads back different is a fault. EDAC corrected and
// uncorrected error counters are compared before and after.
type Memory struct {
	// Bytes tests a fixed amount; 0 means Fraction of MemAvailable.
	Bytes int64 `json:"bytes,omitempty"`
	// Fraction of MemAvailable to test when Bytes is 0 (default 0.9).
	Fraction float64 `json:"fraction,omitempty"`
	// Headroom is left free in any case; values below MinHeadroom are raised
	// to it.
	Headroom int64 `json:"headroom,omitempty"`
	// Passes repeats the patterns (default 1).
	Passes int `json:"passes,omitempty"`
	// Patterns to write, in order: random, address, checkerboard,
	// inverse-checkerboard (default all).
	Patterns []string `json:"patterns,omitempty"`
	// Workers splits the region (default: one per CPU).
	Workers int `json:"workers,omitempty"`

	// corrupt, in tests, damages the region between writing and verifying.
	corrupt func(words []uint64)
}

// Name implements Stage.
func (Memory) Name() string { return "memory" }

// AllPatterns lists the memory stage's patterns.
var AllPatterns = []string{"random", "address", "checkerboard", "inverse-checkerboard"}

// ErrNotEnoughMemory is the tool error when headroom leaves nothing to test.
var ErrNotEnoughMemory = errors.New("not enough free memory to test")

// Size returns how many bytes the stage tests given MemAvailable.
func (s Memory) Size(available int64) (int64, error) {
	head := s.Headroom
	if head < MinHeadroom {
		head = MinHeadroom
	}
	size := s.Bytes
	if size <= 0 {
		f := s.Fraction
		if f <= 0 || f > 1 {
			f = 0.9
		}
		size = int64(float64(available) * f)
	}
	if max := available - head; size > max {
		size = max
	}
	size &^= 1<<20 - 1 // whole MiB
	if size < 1<<20 {
		return 0, fmt.Errorf("%w: %s available, %s must stay free", ErrNotEnoughMemory,
			mib(available), mib(head))
	}
	return size, nil
}

func mib(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }

// fill returns the word a pattern puts at word index i.
func patternWord(pattern string, pass int, i uint64) uint64 {
	switch pattern {
	case "address":
		return i*8 ^ uint64(pass)*0x0101010101010101
	case "checkerboard":
		return 0x5555555555555555
	case "inverse-checkerboard":
		return 0xaaaaaaaaaaaaaaaa
	}
	// random: a stateless mix of the index, so verifying needs no state.
	x := i + uint64(pass)*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// Run implements Stage.
func (s Memory) Run(ctx context.Context, env Env) ([]verdict.Measurement, error) {
	b, err := os.ReadFile(filepath.Join(env.Root, "proc/meminfo"))
	if err != nil {
		return nil, fmt.Errorf("reading free memory: %w", err)
	}
	avail, ok := inventory.ParseMeminfo(b)["MemAvailable"]
	if !ok {
		return nil, errors.New("reading free memory: no MemAvailable in proc/meminfo")
	}
	size, err := s.Size(avail)
	if err != nil {
		return nil, err
	}
	ceBefore, ueBefore := edacCounts(env.Root)

	mem, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mapping %s to test: %w", mib(size), err)
	}
	defer unix.Munmap(mem)
	// Locking keeps the pages in RAM; without CAP_IPC_LOCK it fails and the
	// test still runs (the live image has no swap).
	if err := unix.Mlock(mem); err == nil {
		defer unix.Munlock(mem)
	}
	words := unsafe.Slice((*uint64)(unsafe.Pointer(&mem[0])), len(mem)/8)

	patterns := s.Patterns
	if len(patterns) == 0 {
		patterns = AllPatterns
	}
	passes := s.Passes
	if passes <= 0 {
		passes = 1
	}
	workers := s.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	env.Logger.Info("testing memory", "bytes", size, "available", avail, "patterns", patterns, "passes", passes)

	var miscompares atomic.Int64
	var firstBad atomic.Uint64 // word index + 1 of the first miscompare
	steps := float64(passes * len(patterns))
	start := time.Now()
	var moved int64
	for pass := 0; pass < passes; pass++ {
		for pi, pat := range patterns {
			note := fmt.Sprintf("pass %d/%d, pattern %s", pass+1, passes, pat)
			env.Progress(float64(pass*len(patterns)+pi)/steps, note)
			if err := parallel(ctx, words, workers, func(lo, hi uint64) {
				for i := lo; i < hi; i++ {
					words[i] = patternWord(pat, pass, i)
				}
			}); err != nil {
				return partialMemory(size, moved, start, &miscompares), err
			}
			if s.corrupt != nil {
				s.corrupt(words)
			}
			if err := parallel(ctx, words, workers, func(lo, hi uint64) {
				for i := lo; i < hi; i++ {
					if words[i] != patternWord(pat, pass, i) {
						if miscompares.Add(1) == 1 {
							firstBad.Store(i + 1)
						}
					}
				}
			}); err != nil {
				return partialMemory(size, moved, start, &miscompares), err
			}
			moved += 2 * size
		}
	}
	ms := partialMemory(size, moved, start, &miscompares)
	if n := firstBad.Load(); n > 0 {
		ms[0].Detail = fmt.Sprintf("first miscompare at offset %#x of the tested region", (n-1)*8)
	}
	ceAfter, ueAfter := edacCounts(env.Root)
	if d, ok := delta(ceBefore, ceAfter); ok {
		ms = append(ms, verdict.Measure("memory.edac_corrected", float64(d), "",
			verdict.Should(verdict.OpEQ, 0, "no corrected ECC errors during the test")))
	} else {
		ms = append(ms, verdict.Skip("memory.edac_corrected", "no EDAC memory controller in sysfs (no ECC, or its driver is not loaded)"))
	}
	if d, ok := delta(ueBefore, ueAfter); ok {
		ms = append(ms, verdict.Measure("memory.edac_uncorrected", float64(d), "",
			verdict.Must(verdict.OpEQ, 0, "no uncorrected ECC errors during the test")))
	} else {
		ms = append(ms, verdict.Skip("memory.edac_uncorrected", "no EDAC memory controller in sysfs (no ECC, or its driver is not loaded)"))
	}
	return ms, nil
}

func partialMemory(size, moved int64, start time.Time, miscompares *atomic.Int64) []verdict.Measurement {
	ms := []verdict.Measurement{
		verdict.Measure("memory.miscompares", float64(miscompares.Load()), "words",
			verdict.Must(verdict.OpEQ, 0, "every word reads back what was written")),
		{Name: "memory.tested_bytes", Value: float64(size), Unit: "bytes"},
	}
	if secs := time.Since(start).Seconds(); moved > 0 && secs > 0 {
		ms = append(ms, verdict.Measurement{Name: "memory.bandwidth_mbps", Value: float64(moved) / secs / 1e6,
			Unit: "MB/s", Better: verdict.Higher})
	}
	return ms
}

// parallel runs f over word ranges in chunks, stopping early when ctx ends.
func parallel(ctx context.Context, words []uint64, workers int, f func(lo, hi uint64)) error {
	const chunk = 4 << 20 // words per step (32 MiB), so cancellation is prompt
	n := uint64(len(words))
	var next atomic.Uint64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				lo := next.Add(chunk) - chunk
				if lo >= n {
					return
				}
				f(lo, min(lo+chunk, n))
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}
