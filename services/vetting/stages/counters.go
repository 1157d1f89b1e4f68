package stages

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// counter is a sum of kernel counters that may be absent on a machine.
type counter struct {
	value int64
	// ok is false when no source file existed (virtual machine, no driver).
	ok bool
}

func delta(before, after counter) (int64, bool) {
	if !before.ok || !after.ok {
		return 0, false
	}
	return after.value - before.value, true
}

func readInt(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// sumFiles adds the integers in every file matching the glob below root.
func sumFiles(root, glob string) counter {
	paths, _ := filepath.Glob(filepath.Join(root, glob))
	var c counter
	for _, p := range paths {
		if n, ok := readInt(p); ok {
			c.value += n
			c.ok = true
		}
	}
	return c
}

// throttleCount sums Intel's per-CPU thermal throttle event counters.
func throttleCount(root string) counter {
	core := sumFiles(root, "sys/devices/system/cpu/cpu[0-9]*/thermal_throttle/core_throttle_count")
	pkg := sumFiles(root, "sys/devices/system/cpu/cpu[0-9]*/thermal_throttle/package_throttle_count")
	return counter{value: core.value + pkg.value, ok: core.ok || pkg.ok}
}

// interruptCount sums one row of /proc/interrupts over all CPUs, e.g. "MCE"
// (machine check exceptions).
func interruptCount(root, row string) counter {
	b, err := os.ReadFile(filepath.Join(root, "proc/interrupts"))
	if err != nil {
		return counter{}
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) == 0 {
		return counter{}
	}
	ncpu := len(strings.Fields(lines[0]))
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != row+":" {
			continue
		}
		var c counter
		c.ok = true
		for i := 1; i < len(f) && i <= ncpu; i++ {
			n, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				break
			}
			c.value += n
		}
		return c
	}
	return counter{}
}

// edacCounts sums corrected and uncorrected memory errors over every EDAC
// memory controller.
func edacCounts(root string) (ce, ue counter) {
	return sumFiles(root, "sys/devices/system/edac/mc/mc[0-9]*/ce_count"),
		sumFiles(root, "sys/devices/system/edac/mc/mc[0-9]*/ue_count")
}
