package verdict

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/services/vetting/spec"
)

func TestValidators(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value float64
		vs    []Validator
		want  Status
		msg   string
	}{
		{"no validators", 5, nil, Pass, ""},
		{"== holds", 0, []Validator{Must(OpEQ, 0, "no miscompares")}, Pass, ""},
		{"== violated", 3, []Validator{Must(OpEQ, 0, "no miscompares")}, Fail, "cpu.x = 3, want == 0 (no miscompares)"},
		{"!= violated", 0, []Validator{Must(OpNE, 0, "")}, Fail, "want != 0"},
		{"< holds", 1, []Validator{Must(OpLT, 2, "")}, Pass, ""},
		{"< violated at limit", 2, []Validator{Must(OpLT, 2, "")}, Fail, "want < 2"},
		{"<= at limit", 2, []Validator{Must(OpLE, 2, "")}, Pass, ""},
		{"> violated", 2, []Validator{Must(OpGT, 2, "")}, Fail, "want > 2"},
		{">= holds", 2, []Validator{Must(OpGE, 2, "")}, Pass, ""},
		{"should gives degraded", 1, []Validator{Should(OpEQ, 0, "no throttling")}, Degraded, "want == 0 (no throttling)"},
		{"fail beats degraded", 9, []Validator{Should(OpLE, 5, "soft"), Must(OpLE, 8, "hard")}, Fail, "(hard)"},
		{"degraded after fail keeps fail", 9, []Validator{Must(OpLE, 8, "hard"), Should(OpLE, 5, "soft")}, Fail, "(hard)"},
		{"unknown op fails", 1, []Validator{{Op: "~", Limit: 1}}, Fail, ""},
		{"NaN is an error", math.NaN(), []Validator{Must(OpGE, 0, "")}, Error, "not a finite number"},
		{"big numbers render plainly", 123456789, []Validator{Must(OpLE, 1000, "")}, Fail, "cpu.x = 123457000, want <= 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Measure("cpu.x", tc.value, "", tc.vs...)
			if m.Status != tc.want || !strings.Contains(m.Message, tc.msg) {
				t.Errorf("Measure(%v, %+v) = %s %q, want %s containing %q", tc.value, tc.vs, m.Status, m.Message, tc.want, tc.msg)
			}
		})
	}
}

func TestSkipAndErroredStay(t *testing.T) {
	if m := Evaluate(Skip("memory.edac_ce", "no EDAC driver")); m.Status != Skipped {
		t.Errorf("Evaluate(Skip) = %s, want SKIPPED", m.Status)
	}
	if m := Evaluate(Errored("storage.sda.read_mbps", errors.New("open /dev/sda: permission denied"))); m.Status != Error {
		t.Errorf("Evaluate(Errored) = %s, want ERROR", m.Status)
	}
}

func TestWorst(t *testing.T) {
	for _, tc := range []struct {
		in   []Status
		want Status
	}{
		{nil, Skipped},
		{[]Status{Skipped, Skipped}, Skipped},
		{[]Status{Pass, Skipped}, Pass},
		{[]Status{Pass, Degraded}, Degraded},
		{[]Status{Degraded, Error}, Error},
		{[]Status{Error, Timeout}, Timeout},
		{[]Status{Timeout, Fail, Pass}, Fail},
	} {
		if got := Worst(tc.in...); got != tc.want {
			t.Errorf("Worst(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestStage(t *testing.T) {
	pass := Measure("a", 1, "", Must(OpGE, 1, ""))
	fail := Measure("b", 0, "", Must(OpGE, 1, "at least one"))
	degraded := Measure("c", 5, "", Should(OpEQ, 0, ""))
	toolErr := errors.New("opening /dev/nvme0n1: no such device")
	for _, tc := range []struct {
		name     string
		ms       []Measurement
		err      error
		timedOut bool
		want     Status
		why      string
	}{
		{"all pass", []Measurement{pass, pass}, nil, false, Pass, "2 measurements passed"},
		{"nothing measured", nil, nil, false, Skipped, ""},
		{"only skipped", []Measurement{Skip("x", "no EDAC")}, nil, false, Skipped, "no EDAC"},
		{"degraded", []Measurement{pass, degraded}, nil, false, Degraded, "c = 5"},
		{"fail", []Measurement{pass, fail, degraded}, nil, false, Fail, "(at least one)"},
		{"tool error is ERROR not FAIL", []Measurement{pass}, toolErr, false, Error, "no such device"},
		{"tool error without measurements", nil, toolErr, false, Error, "no such device"},
		{"errored measurement is ERROR", []Measurement{pass, Errored("d", toolErr)}, nil, false, Error, "no such device"},
		{"fail before the tool error stands", []Measurement{fail}, toolErr, false, Fail, "at least one"},
		{"timeout", []Measurement{pass}, nil, true, Timeout, "did not finish"},
		{"fail before the timeout stands", []Measurement{fail}, nil, true, Fail, "at least one"},
		{"timeout beats degraded", []Measurement{degraded}, nil, true, Timeout, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := Stage(tc.ms, tc.err, tc.timedOut)
			if got != tc.want || !strings.Contains(why, tc.why) {
				t.Errorf("Stage(%s) = %s %q, want %s containing %q", tc.name, got, why, tc.want, tc.why)
			}
		})
	}
}

func TestRun(t *testing.T) {
	mismatch := spec.Result{Fact: "memory.installed_bytes", Severity: spec.SeverityFail, Status: spec.StatusMismatch,
		Problem: "memory.installed_bytes: expected ≥ 64 GiB, got 2 GiB"}
	soft := spec.Result{Fact: "pcie.degraded_links", Severity: spec.SeverityDegraded, Status: spec.StatusMismatch, Problem: "pcie"}
	info := spec.Result{Fact: "bios.version", Severity: spec.SeverityInfo, Status: spec.StatusMismatch, Problem: "bios"}
	invalid := spec.Result{Fact: "cpu.model", Severity: spec.SeverityFail, Status: spec.StatusInvalid, Problem: "cpu.model: cannot check"}
	missing := spec.Result{Fact: "nic.eth1.mac", Severity: spec.SeverityFail, Status: spec.StatusMissing, Problem: "nic.eth1.mac: missing"}
	match := spec.Result{Fact: "cpu.threads", Severity: spec.SeverityFail, Status: spec.StatusMatch}
	passing := StageResult{Stage: "cpu", Status: Pass}
	erroring := StageResult{Stage: "storage", Status: Error, Summary: "opening /dev/sdb: no such device"}
	for _, tc := range []struct {
		name   string
		diff   []spec.Result
		stages []StageResult
		want   Status
		first  string
	}{
		{"clean", []spec.Result{match}, []StageResult{passing}, Pass, ""},
		{"nothing", nil, nil, Skipped, ""},
		{"spec mismatch fails the run", []spec.Result{match, mismatch}, []StageResult{passing}, Fail,
			"memory.installed_bytes: expected ≥ 64 GiB, got 2 GiB"},
		{"missing fact fails", []spec.Result{missing}, []StageResult{passing}, Fail, "nic.eth1.mac"},
		{"degraded severity", []spec.Result{soft}, []StageResult{passing}, Degraded, "pcie"},
		{"info never counts", []spec.Result{info}, []StageResult{passing}, Pass, ""},
		{"invalid item is an error", []spec.Result{invalid}, []StageResult{passing}, Error, "cannot check"},
		{"stage error", []spec.Result{match}, []StageResult{passing, erroring}, Error, "no such device"},
		{"fail listed before error", []spec.Result{mismatch}, []StageResult{erroring}, Fail, "memory.installed_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, findings := Run(tc.diff, tc.stages)
			if got != tc.want {
				t.Errorf("Run(%s) = %s, want %s (findings %+v)", tc.name, got, tc.want, findings)
			}
			if tc.first == "" {
				if len(findings) != 0 {
					t.Errorf("Run(%s) findings = %+v, want none", tc.name, findings)
				}
				return
			}
			if len(findings) == 0 || !strings.Contains(findings[0].Message, tc.first) {
				t.Errorf("Run(%s) first finding = %+v, want one containing %q", tc.name, findings, tc.first)
			}
		})
	}
}

func TestBaseline(t *testing.T) {
	run := func(mbps float64, lat float64) []Measurement {
		return []Measurement{
			Evaluate(Measurement{Name: "storage.sda.read_mbps", Value: mbps, Unit: "MB/s", Better: Higher}),
			Evaluate(Measurement{Name: "storage.sda.p99_us", Value: lat, Unit: "µs", Better: Lower}),
			Measure("storage.sda.read_errors", 0, ""),
			Skip("storage.sda.smart", "no SMART"),
		}
	}
	failed := run(10, 10000)
	failed[0].Status, failed[1].Status = Fail, Fail // a failed run's speed does not count
	b := NewBaseline("PowerEdge R650", [][]Measurement{run(500, 100), run(520, 110), run(480, 90), failed})
	if st := b.Stats["storage.sda.read_mbps"]; st.N != 3 || st.Mean != 500 || st.Min != 480 || st.Max != 520 || math.Abs(st.Stddev-20) > 1e-9 {
		t.Errorf("NewBaseline read_mbps stats = %+v, want n 3 mean 500 min 480 max 520 stddev 20", st)
	}
	if _, ok := b.Stats["storage.sda.read_errors"]; ok {
		t.Error("NewBaseline kept a measurement without a direction")
	}
	for _, tc := range []struct {
		name      string
		mbps, lat float64
		policy    Policy
		want      [2]Status
	}{
		{"as fast as usual", 495, 100, Policy{}, [2]Status{Pass, Pass}},
		{"slower read", 350, 100, Policy{}, [2]Status{Degraded, Pass}},
		{"slower latency", 500, 200, Policy{}, [2]Status{Pass, Degraded}},
		{"within a loose tolerance", 350, 100, Policy{Tolerance: 0.5}, [2]Status{Pass, Pass}},
		{"too little history", 100, 900, Policy{MinRuns: 4}, [2]Status{Pass, Pass}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ApplyBaseline(run(tc.mbps, tc.lat), b, tc.policy)
			if got[0].Status != tc.want[0] || got[1].Status != tc.want[1] {
				t.Errorf("ApplyBaseline(%v MB/s, %v µs) = %s/%s (%q %q), want %s/%s", tc.mbps, tc.lat,
					got[0].Status, got[1].Status, got[0].Message, got[1].Message, tc.want[0], tc.want[1])
			}
			if got[3].Status != Skipped || got[2].Status != Pass {
				t.Errorf("ApplyBaseline changed measurements without a direction: %+v", got[2:])
			}
		})
	}
	slow := ApplyBaseline(run(350, 100), b, Policy{})[0]
	if want := "storage.sda.read_mbps = 350 MB/s, want >= 400 MB/s (baseline of PowerEdge R650: mean 500 MB/s over 3 runs)"; slow.Message != want {
		t.Errorf("baseline message = %q, want %q", slow.Message, want)
	}

	stages := ApplyBaselineToStages([]StageResult{
		{Stage: "storage", Status: Pass, Measurements: run(350, 100)},
		{Stage: "cpu", Status: Error, Error: "tool broke", Measurements: run(500, 100)},
	}, b, Policy{})
	if diff := cmp.Diff([]Status{Degraded, Error}, []Status{stages[0].Status, stages[1].Status}); diff != "" {
		t.Errorf("ApplyBaselineToStages statuses (-want +got):\n%s", diff)
	}
}
