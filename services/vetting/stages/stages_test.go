package stages

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/services/vetting/inventory"
	"kiln.dev/kiln/services/vetting/verdict"
)

// testEnv returns an Env rooted at root with logs in t.Log.
func testEnv(t *testing.T, root string) Env {
	return Env{Root: root, Logger: testlog.New(t, slog.LevelInfo).With("component", "vetting"),
		Progress: func(float64, string) {}, Now: time.Now}
}

func runStage(t *testing.T, root string, p Planned) verdict.StageResult {
	t.Helper()
	r := &Runner{Env: testEnv(t, root), Grace: 200 * time.Millisecond}
	res := r.RunOne(context.Background(), p)
	for _, m := range res.Measurements {
		t.Logf("%s: %s = %v %s %s %s %s", res.Stage, m.Name, m.Value, m.Unit, m.Status, m.Message, m.Detail)
	}
	return res
}

// measurement finds a measurement by name.
func measurement(t *testing.T, res verdict.StageResult, name string) verdict.Measurement {
	t.Helper()
	for _, m := range res.Measurements {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("stage %s has no measurement %s (has %d)", res.Stage, name, len(res.Measurements))
	return verdict.Measurement{}
}

// fakeStage is a Stage whose behaviour each test sets.
type fakeStage struct {
	run func(ctx context.Context, env Env) ([]verdict.Measurement, error)
}

func (fakeStage) Name() string { return "fake" }
func (f fakeStage) Run(ctx context.Context, env Env) ([]verdict.Measurement, error) {
	return f.run(ctx, env)
}

func TestRunner(t *testing.T) {
	good := verdict.Measure("fake.ok", 1, "", verdict.Must(verdict.OpEQ, 1, ""))
	bad := verdict.Measure("fake.errors", 2, "", verdict.Must(verdict.OpEQ, 0, "no errors"))
	for _, tc := range []struct {
		name    string
		run     func(ctx context.Context, env Env) ([]verdict.Measurement, error)
		want    verdict.Status
		summary string
		kept    int // measurements kept
	}{
		{"pass", func(context.Context, Env) ([]verdict.Measurement, error) { return []verdict.Measurement{good}, nil },
			verdict.Pass, "1 measurements passed", 1},
		{"hardware failure", func(context.Context, Env) ([]verdict.Measurement, error) {
			return []verdict.Measurement{good, bad}, nil
		}, verdict.Fail, "fake.errors = 2, want == 0 (no errors)", 2},
		{"tool error is ERROR", func(context.Context, Env) ([]verdict.Measurement, error) {
			return nil, errors.New("opening /dev/sdz: no such file or directory")
		}, verdict.Error, "no such file", 0},
		{"panic is ERROR", func(context.Context, Env) ([]verdict.Measurement, error) { panic("index out of range") },
			verdict.Error, "panicked: index out of range", 0},
		{"timeout keeps partial measurements", func(ctx context.Context, _ Env) ([]verdict.Measurement, error) {
			<-ctx.Done()
			return []verdict.Measurement{good}, ctx.Err()
		}, verdict.Timeout, "did not finish within its timeout of 100ms", 1},
		{"failure before the timeout stands", func(ctx context.Context, _ Env) ([]verdict.Measurement, error) {
			<-ctx.Done()
			return []verdict.Measurement{bad}, ctx.Err()
		}, verdict.Fail, "no errors", 1},
		{"stage ignoring its deadline", func(ctx context.Context, _ Env) ([]verdict.Measurement, error) {
			time.Sleep(2 * time.Second)
			return []verdict.Measurement{good}, nil
		}, verdict.Timeout, "did not stop within", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			res := runStage(t, "/", Planned{Stage: fakeStage{tc.run}, Timeout: 100 * time.Millisecond})
			if res.Status != tc.want || !strings.Contains(res.Summary, tc.summary) || len(res.Measurements) != tc.kept {
				t.Errorf("RunOne(%s) = %s %q with %d measurements, want %s containing %q with %d",
					tc.name, res.Status, res.Summary, len(res.Measurements), tc.want, tc.summary, tc.kept)
			}
			if took := time.Since(start); took > 1500*time.Millisecond {
				t.Errorf("RunOne(%s) took %v, want it bounded by timeout + grace", tc.name, took)
			}
		})
	}
}

func TestRunnerEventsAndCancel(t *testing.T) {
	var mu sync.Mutex
	var kinds []EventKind
	r := &Runner{Env: testEnv(t, "/"), Emit: func(e Event) {
		mu.Lock()
		kinds = append(kinds, e.Kind)
		mu.Unlock()
	}}
	stage := fakeStage{func(ctx context.Context, env Env) ([]verdict.Measurement, error) {
		env.Progress(0.5, "half way")
		return nil, nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	results := r.Run(ctx, []Planned{{Stage: stage, Timeout: time.Second}, {Stage: fakeStage{func(ctx context.Context, _ Env) ([]verdict.Measurement, error) {
		cancel()
		<-ctx.Done()
		return nil, ctx.Err()
	}}, Timeout: time.Minute}, {Stage: stage, Timeout: time.Second}})
	if len(results) != 2 || results[0].Status != verdict.Skipped || results[1].Status != verdict.Error ||
		!strings.Contains(results[1].Error, "stopped: context canceled") {
		t.Errorf("Run with a cancel in stage 2 = %+v, want SKIPPED (no measurements), ERROR (stopped) and no third stage", results)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []EventKind{EventStart, EventProgress, EventEnd, EventStart, EventEnd}
	if strings.Join(kindsStrings(kinds), ",") != strings.Join(kindsStrings(want), ",") {
		t.Errorf("events = %v, want %v", kinds, want)
	}
}

func kindsStrings(ks []EventKind) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = string(k)
	}
	return out
}

func TestCPUStage(t *testing.T) {
	res := runStage(t, "/", Planned{Stage: CPU{Duration: time.Second}, Timeout: 30 * time.Second})
	if res.Status == verdict.Fail || res.Status == verdict.Error || res.Status == verdict.Timeout {
		t.Fatalf("CPU stage = %s (%s), want a verdict without hardware or tool failure", res.Status, res.Summary)
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	if m := measurement(t, res, "cpu.cores_exercised"); m.Value != float64(set.Count()) || m.Status != verdict.Pass {
		t.Errorf("cpu.cores_exercised = %v (%s), want %d CPUs", m.Value, m.Status, set.Count())
	}
	if m := measurement(t, res, "cpu.compute_errors"); m.Value != 0 || m.Status != verdict.Pass {
		t.Errorf("cpu.compute_errors = %v (%s), want 0", m.Value, m.Status)
	}
	if m := measurement(t, res, "cpu.units_per_second"); m.Value < 10 || m.Better != verdict.Higher {
		t.Errorf("cpu.units_per_second = %v, want a sane rate (≥ 10) marked higher-is-better", m.Value)
	}
	if d := res.Duration(); d < time.Second || d > 10*time.Second {
		t.Errorf("CPU stage of 1 s took %v", d)
	}
}

func TestWorkUnitIsDeterministic(t *testing.T) {
	a, b := newScratch(), newScratch()
	for seed := uint64(0); seed < 4; seed++ {
		if workUnit(seed, a.buf, a.a, a.b, a.c) != workUnit(seed, b.buf, b.a, b.b, b.c) {
			t.Fatalf("workUnit(%d) differs between two runs on the same CPU", seed)
		}
	}
	if workUnit(1, a.buf, a.a, a.b, a.c) == workUnit(2, a.buf, a.a, a.b, a.c) {
		t.Error("workUnit(1) == workUnit(2): seeds do not change the work")
	}
}

// fakeRoot writes files below a temporary root.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCounters(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"sys/devices/system/cpu/cpu0/thermal_throttle/core_throttle_count":    "3\n",
		"sys/devices/system/cpu/cpu0/thermal_throttle/package_throttle_count": "1\n",
		"sys/devices/system/cpu/cpu1/thermal_throttle/core_throttle_count":    "2\n",
		"sys/devices/system/edac/mc/mc0/ce_count":                             "5\n",
		"sys/devices/system/edac/mc/mc0/ue_count":                             "0\n",
		"sys/devices/system/edac/mc/mc1/ce_count":                             "1\n",
		"proc/interrupts": "           CPU0       CPU1\n  0:         35          0   IO-APIC   2-edge      timer\n" +
			"MCE:          2          1   Machine check exceptions\nMCP:         40         40   Machine check polls\n",
	})
	if c := throttleCount(root); c != (counter{6, true}) {
		t.Errorf("throttleCount = %+v, want 6", c)
	}
	if c := interruptCount(root, "MCE"); c != (counter{3, true}) {
		t.Errorf("interruptCount(MCE) = %+v, want 3", c)
	}
	if c := interruptCount(root, "THR"); c.ok {
		t.Errorf("interruptCount(THR) = %+v, want absent", c)
	}
	ce, ue := edacCounts(root)
	if ce != (counter{6, true}) || ue != (counter{0, true}) {
		t.Errorf("edacCounts = %+v %+v, want 6 corrected, 0 uncorrected", ce, ue)
	}
	empty := t.TempDir()
	if c := throttleCount(empty); c.ok {
		t.Errorf("throttleCount(empty root) = %+v, want absent", c)
	}
	if _, ok := delta(counter{1, true}, counter{}); ok {
		t.Error("delta with an absent side is ok, want not ok")
	}
}

func TestMemorySize(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		name    string
		s       Memory
		avail   int64
		want    int64
		wantErr bool
	}{
		{"default fraction", Memory{}, 10 * gib, 9 * gib &^ (1<<20 - 1), false},
		{"fraction", Memory{Fraction: 0.5}, 8 * gib, 4 * gib, false},
		{"headroom wins over fraction", Memory{Fraction: 1}, 1 * gib, gib - MinHeadroom, false},
		{"explicit headroom", Memory{Fraction: 1, Headroom: gib / 2}, 2 * gib, gib + gib/2, false},
		{"headroom below the floor is raised", Memory{Fraction: 1, Headroom: 1 << 20}, gib, gib - MinHeadroom, false},
		{"fixed bytes", Memory{Bytes: 64 << 20}, 8 * gib, 64 << 20, false},
		{"fixed bytes clamped by headroom", Memory{Bytes: 8 * gib}, 2 * gib, 2*gib - MinHeadroom, false},
		{"nothing left", Memory{}, 200 << 20, 0, true},
		{"bad fraction means default", Memory{Fraction: 7}, 10 * gib, 9 * gib &^ (1<<20 - 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.s.Size(tc.avail)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("Size(%d) = %d, %v; want %d, error %v", tc.avail, got, err, tc.want, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrNotEnoughMemory) {
				t.Errorf("Size error %v does not wrap ErrNotEnoughMemory", err)
			}
		})
	}
}

func TestMemoryStage(t *testing.T) {
	res := runStage(t, "/", Planned{Stage: Memory{Bytes: 64 << 20, Passes: 1}, Timeout: time.Minute})
	if res.Status != verdict.Pass {
		// Without EDAC its measurements are SKIPPED; everything else passes.
		t.Fatalf("memory stage on 64 MiB = %s (%s), want PASS", res.Status, res.Summary)
	}
	if m := measurement(t, res, "memory.tested_bytes"); m.Value != 64<<20 {
		t.Errorf("memory.tested_bytes = %v, want 64 MiB", m.Value)
	}
	if m := measurement(t, res, "memory.miscompares"); m.Value != 0 || m.Status != verdict.Pass {
		t.Errorf("memory.miscompares = %v %s, want 0 PASS", m.Value, m.Status)
	}
	if m := measurement(t, res, "memory.bandwidth_mbps"); m.Value < 10 {
		t.Errorf("memory.bandwidth_mbps = %v, want a sane rate", m.Value)
	}
}

func TestMemoryStageFindsCorruption(t *testing.T) {
	s := Memory{Bytes: 16 << 20, Patterns: []string{"random"}, corrupt: func(w []uint64) {
		w[12345] ^= 1 << 17 // one flipped bit
	}}
	res := runStage(t, "/", Planned{Stage: s, Timeout: time.Minute})
	m := measurement(t, res, "memory.miscompares")
	if res.Status != verdict.Fail || m.Value != 1 || !strings.Contains(m.Detail, "0x181c8") {
		t.Errorf("memory stage with a flipped bit = %s, miscompares %v %q; want FAIL, 1 at offset 0x181c8", res.Status, m.Value, m.Detail)
	}
}

func TestMemoryToolErrors(t *testing.T) {
	for _, tc := range []struct {
		name, meminfo string
		s             Memory
		msg           string
	}{
		// 1 PiB "available": the mapping exceeds the address space.
		{"mapping fails", "MemAvailable: 1125899906842624 kB\n", Memory{}, "mapping"},
		{"too little memory", "MemAvailable: 204800 kB\n", Memory{}, "not enough free memory"},
		{"no MemAvailable", "MemTotal: 1024 kB\n", Memory{}, "no MemAvailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, map[string]string{"proc/meminfo": tc.meminfo})
			res := runStage(t, root, Planned{Stage: tc.s, Timeout: time.Minute})
			if res.Status != verdict.Error || !strings.Contains(res.Error, tc.msg) {
				t.Errorf("memory stage (%s) = %s %q, want ERROR (a tool error, not FAIL) containing %q", tc.name, res.Status, res.Error, tc.msg)
			}
		})
	}
}

func TestPatterns(t *testing.T) {
	for _, p := range AllPatterns {
		if patternWord(p, 0, 7) != patternWord(p, 0, 7) {
			t.Errorf("pattern %s is not deterministic", p)
		}
	}
	if patternWord("random", 0, 1) == patternWord("random", 1, 1) {
		t.Error("random pattern does not change with the pass")
	}
	if patternWord("address", 0, 3) != 24 {
		t.Errorf("address pattern of word 3 = %d, want its byte offset 24", patternWord("address", 0, 3))
	}
}

// tempDisk writes a file of random-looking content to stand in for a disk.
func tempDisk(t *testing.T, size int) (string, [32]byte) {
	t.Helper()
	b := make([]byte, size)
	fillBlock(b, 42, 0)
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, sha256.Sum256(b)
}

// smartSeq is a SMARTReader that answers from a list, one per call.
type smartSeq struct {
	mu sync.Mutex
	// answers is guarded by mu.
	answers []*inventory.SMART
	err     error
}

func (s *smartSeq) SMART(string) (*inventory.SMART, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	a := s.answers[0]
	if len(s.answers) > 1 {
		s.answers = s.answers[1:]
	}
	return a, nil
}

func TestStorageReadOnly(t *testing.T) {
	path, sum := tempDisk(t, 32<<20)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	healthy := &inventory.SMART{Health: "PASSED", Counters: map[string]int64{"pending_sectors": 0, "reallocated_sectors": 0}}
	s := Storage{Targets: []Target{{Name: "img", Path: path}}, Duration: 300 * time.Millisecond,
		SMART: &smartSeq{answers: []*inventory.SMART{healthy}}}
	res := runStage(t, "/", Planned{Stage: s, Timeout: time.Minute})
	if res.Status != verdict.Pass {
		t.Fatalf("storage stage on a file = %s (%s), want PASS", res.Status, res.Summary)
	}
	seq := measurement(t, res, "storage.img.seq_read_mbps")
	if seq.Value <= 0 {
		t.Errorf("seq_read_mbps = %v, want > 0", seq.Value)
	}
	if seq.Detail != "" {
		t.Logf("the temporary directory refuses O_DIRECT (tmpfs?): %s", seq.Detail)
	}
	if m := measurement(t, res, "storage.img.rand_read_iops"); m.Value <= 0 {
		t.Errorf("rand_read_iops = %v, want > 0", m.Value)
	}
	p50 := measurement(t, res, "storage.img.read_latency_p50_us").Value
	p99 := measurement(t, res, "storage.img.read_latency_p99_us").Value
	max := measurement(t, res, "storage.img.read_latency_max_us").Value
	if !(0 < p50 && p50 <= p99 && p99 <= max) {
		t.Errorf("latency percentiles p50 %v p99 %v max %v, want 0 < p50 ≤ p99 ≤ max", p50, p99, max)
	}
	if m := measurement(t, res, "storage.img.read_errors"); m.Value != 0 {
		t.Errorf("read_errors = %v, want 0", m.Value)
	}
	for _, m := range res.Measurements {
		if strings.Contains(m.Name, "write") || strings.Contains(m.Name, "verify") {
			t.Errorf("read-only run measured %s", m.Name)
		}
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if sha256.Sum256(b) != sum || !after.ModTime().Equal(before.ModTime()) {
		t.Error("the read-only storage stage changed the disk")
	}
}

func TestStorageDestructive(t *testing.T) {
	path, sum := tempDisk(t, 16<<20)
	s := Storage{Targets: []Target{{Name: "img", Path: path}}, Duration: 200 * time.Millisecond, Destructive: true,
		WriteBytes: 8 << 20}
	res := runStage(t, "/", Planned{Stage: s, Timeout: time.Minute})
	if res.Status != verdict.Pass {
		t.Fatalf("destructive storage stage = %s (%s), want PASS", res.Status, res.Summary)
	}
	if m := measurement(t, res, "storage.img.verify_errors"); m.Value != 0 || m.Status != verdict.Pass {
		t.Errorf("verify_errors = %v %s, want 0", m.Value, m.Status)
	}
	if m := measurement(t, res, "storage.img.bytes_written"); m.Value <= 0 || m.Value > 8<<20 {
		t.Errorf("bytes_written = %v, want within the 8 MiB cap", m.Value)
	}
	if m := measurement(t, res, "storage.img.smart_health"); m.Status != verdict.Skipped {
		t.Errorf("smart_health without a reader = %s, want SKIPPED", m.Status)
	}
	b, _ := os.ReadFile(path)
	if sha256.Sum256(b) == sum {
		t.Error("the destructive stage did not write")
	}
}

func TestPlanNeverWritesWithoutPermission(t *testing.T) {
	p, err := ProfileByName(Quick)
	if err != nil {
		t.Fatal(err)
	}
	p.Storage.Destructive = true // a profile cannot grant what the run did not
	plan, err := Plan(p, Machine{Disks: []Target{{Name: "sda", Path: "/dev/sda"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, pl := range plan {
		if s, ok := pl.Stage.(Storage); ok && s.Destructive {
			t.Error("Plan made storage destructive without Machine.Wipeable")
		}
	}
	plan, _ = Plan(p, Machine{Disks: []Target{{Name: "sda", Path: "/dev/sda"}}, Wipeable: true})
	var names []string
	for _, pl := range plan {
		names = append(names, pl.Stage.Name())
		if pl.Timeout <= 0 {
			t.Errorf("stage %s planned without a timeout", pl.Stage.Name())
		}
		if s, ok := pl.Stage.(Storage); ok && !s.Destructive {
			t.Error("Plan did not write on a wipeable host")
		}
	}
	if strings.Join(names, ",") != "cpu,memory,storage,network" {
		t.Errorf("quick plan stages = %v, want cpu,memory,storage,network", names)
	}
	for _, name := range []string{Quick, Standard, Extended} {
		if _, err := ProfileByName(name); err != nil {
			t.Errorf("ProfileByName(%s): %v", name, err)
		}
	}
	if _, err := ProfileByName("thorough"); err == nil {
		t.Error("ProfileByName(thorough) succeeded, want an error")
	}
	if _, err := Plan(Profile{Stages: []string{"gpu"}}, Machine{}); err == nil {
		t.Error("Plan with stage gpu succeeded, want an error")
	}
}

func TestStorageErrorsAndSMART(t *testing.T) {
	path, _ := tempDisk(t, 8<<20)
	ok := &inventory.SMART{Health: "PASSED", Counters: map[string]int64{"pending_sectors": 0, "media_errors": 0}}
	grown := &inventory.SMART{Health: "PASSED", Counters: map[string]int64{"pending_sectors": 8, "media_errors": 0}}
	failed := &inventory.SMART{Health: "FAILED", Counters: map[string]int64{}}
	for _, tc := range []struct {
		name   string
		s      Storage
		want   verdict.Status
		metric string
	}{
		{"missing device is a tool error", Storage{Targets: []Target{{Name: "sdz", Path: "/nonexistent/sdz"}}}, verdict.Error, "storage.sdz.read"},
		{"tiny device is a tool error", Storage{Targets: []Target{{Name: "img", Path: path, Size: 4096}}}, verdict.Error, "storage.img.read"},
		{"defects grown during the stage", Storage{Targets: []Target{{Name: "img", Path: path}},
			SMART: &smartSeq{answers: []*inventory.SMART{ok, grown}}}, verdict.Fail, "storage.img.smart_pending_sectors_growth"},
		{"drive says FAILED", Storage{Targets: []Target{{Name: "img", Path: path}},
			SMART: &smartSeq{answers: []*inventory.SMART{failed}}}, verdict.Fail, "storage.img.smart_health"},
		{"no SMART on this disk", Storage{Targets: []Target{{Name: "img", Path: path}},
			SMART: &smartSeq{answers: []*inventory.SMART{nil}}}, verdict.Pass, "storage.img.smart_health"},
		{"SMART unreadable is a tool error", Storage{Targets: []Target{{Name: "img", Path: path}},
			SMART: &smartSeq{err: errors.New("SG_IO: permission denied")}}, verdict.Error, "storage.img.smart_health"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.Duration = 50 * time.Millisecond
			res := runStage(t, "/", Planned{Stage: tc.s, Timeout: time.Minute})
			if res.Status != tc.want {
				t.Errorf("storage (%s) = %s (%s), want %s", tc.name, res.Status, res.Summary, tc.want)
			}
			measurement(t, res, tc.metric)
		})
	}
}

func TestMediaError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{unix.EIO, true}, {unix.ENODATA, true}, {unix.EINVAL, false}, {unix.EBADF, false}, {errors.New("x"), false},
	} {
		if got := mediaError(tc.err); got != tc.want {
			t.Errorf("mediaError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
