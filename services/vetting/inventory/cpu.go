package inventory

import (
	"math"
	"strconv"
	"strings"
)

// cpuinfoEntry is one logical CPU's block of /proc/cpuinfo.
type cpuinfoEntry struct {
	processor, pkg, core int
	vendor, model        string
	mhz                  float64
}

// parseCPUInfo reads /proc/cpuinfo (x86 field names; other architectures
// give processor numbers only).
func parseCPUInfo(b []byte) []cpuinfoEntry {
	var out []cpuinfoEntry
	cur := cpuinfoEntry{processor: -1, pkg: -1, core: -1}
	flush := func() {
		if cur.processor >= 0 {
			out = append(out, cur)
		}
		cur = cpuinfoEntry{processor: -1, pkg: -1, core: -1}
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			if strings.TrimSpace(line) == "" {
				flush()
			}
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		atoi := func() int {
			n, err := strconv.Atoi(v)
			if err != nil {
				return -1
			}
			return n
		}
		switch k {
		case "processor":
			if cur.processor >= 0 {
				flush()
			}
			cur.processor = atoi()
		case "vendor_id":
			cur.vendor = v
		case "model name":
			cur.model = strings.Join(strings.Fields(v), " ")
		case "physical id":
			cur.pkg = atoi()
		case "core id":
			cur.core = atoi()
		case "cpu MHz":
			cur.mhz, _ = strconv.ParseFloat(v, 64)
		}
	}
	flush()
	return out
}

// parseCPUList reads a kernel CPU list ("0-3,8,10-11").
func parseCPUList(s string) []int {
	var out []int
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b-a > 1<<16 {
				return nil
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out
}

func (c *collector) cpu() {
	info := map[int]cpuinfoEntry{}
	if b, err := c.r.fs.ReadFile("proc/cpuinfo"); err != nil {
		c.warn("CPU: reading proc/cpuinfo: %v", err)
	} else {
		for _, e := range parseCPUInfo(b) {
			info[e.processor] = e
		}
	}
	online := parseCPUList(c.r.strOr("sys/devices/system/cpu/online"))
	if online == nil {
		for _, k := range sortedKeys(info) {
			online = append(online, k)
		}
	}
	type pkgAcc struct {
		cores   map[int]bool
		threads int
		model   string
		maxKHz  int64
		mhz     float64
	}
	pkgs := map[int]*pkgAcc{}
	for _, n := range online {
		dir := "sys/devices/system/cpu/cpu" + strconv.Itoa(n)
		e, hasInfo := info[n]
		pkg := int(c.r.int64Or(dir+"/topology/physical_package_id", -1))
		core := int(c.r.int64Or(dir+"/topology/core_id", -1))
		if pkg < 0 && hasInfo {
			pkg = e.pkg
		}
		if core < 0 && hasInfo {
			core = e.core
		}
		if pkg < 0 {
			pkg = 0
		}
		if core < 0 {
			core = n // unknown topology: count every CPU as a core
		}
		a := pkgs[pkg]
		if a == nil {
			a = &pkgAcc{cores: map[int]bool{}}
			pkgs[pkg] = a
		}
		a.cores[core] = true
		a.threads++
		if a.model == "" {
			a.model = e.model
		}
		if c.inv.CPU.Vendor == "" {
			c.inv.CPU.Vendor = e.vendor
		}
		if khz := c.r.int64Or(dir+"/cpufreq/cpuinfo_max_freq", 0); khz > a.maxKHz {
			a.maxKHz = khz
		}
		a.mhz = math.Max(a.mhz, e.mhz)
	}
	if len(online) == 0 {
		c.warn("CPU: no online CPUs found in sys/devices/system/cpu/online or proc/cpuinfo")
	}
	for i, id := range sortedKeys(pkgs) {
		a := pkgs[id]
		p := Package{ID: id, Model: a.model, Cores: len(a.cores), Threads: a.threads, MaxMHz: int(a.maxKHz / 1000)}
		if i < len(c.smbiosCPUs) {
			s := c.smbiosCPUs[i]
			p.Socket = s.socket
			if p.Model == "" {
				p.Model = s.version
			}
			if p.MaxMHz == 0 {
				p.MaxMHz = s.maxMHz
			}
		}
		if p.MaxMHz == 0 {
			p.MaxMHz = int(math.Round(a.mhz))
		}
		c.inv.CPU.Packages = append(c.inv.CPU.Packages, p)
		c.inv.CPU.Sockets++
		c.inv.CPU.Cores += p.Cores
		c.inv.CPU.Threads += p.Threads
		if c.inv.CPU.Model == "" {
			c.inv.CPU.Model = p.Model
		}
		if p.MaxMHz > c.inv.CPU.MaxMHz {
			c.inv.CPU.MaxMHz = p.MaxMHz
		}
	}
}
