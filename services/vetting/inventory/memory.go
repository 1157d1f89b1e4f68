package inventory

import (
	"strconv"
	"strings"
)

// ParseMeminfo reads /proc/meminfo into byte counts by field name
// ("MemTotal", "MemAvailable"); fields without a kB unit are plain counts.
func ParseMeminfo(b []byte) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		out[strings.TrimSpace(k)] = n
	}
	return out
}

func (c *collector) memory() {
	b, err := c.r.fs.ReadFile("proc/meminfo")
	if err != nil {
		c.warn("memory: reading proc/meminfo: %v", err)
		return
	}
	c.inv.Memory.UsableBytes = ParseMeminfo(b)["MemTotal"]
}
