package spec

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var facts = Facts{
	"system.product":          String("PowerEdge R650"),
	"bios.version":            String("1.10"),
	"cpu.model":               String("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"),
	"cpu.threads":             Int(128),
	"memory.installed_bytes":  Number(256<<30, UnitBytes),
	"memory.usable_bytes":     Number(2035123456, UnitBytes),
	"nics.drivers":            Strings("ixgbe", "ixgbe", "igb"),
	"nics.speed_mbps":         Numbers(UnitMbps, 10000, 1000),
	"disks.models":            Strings("SAMSUNG MZ7L3480HCHQ-00A07", "Dell Ent NVMe P5600 MU U.2 1.6TB"),
	"disks.smart_health":      Strings(),
	"disk.nvme0n1.rotational": Bool(false),
	"pcie.degraded_links":     Int(0),
}

func TestDiffOperators(t *testing.T) {
	for _, tc := range []struct {
		name, item string
		want       Status
		problem    string // substring of Problem when not a match
	}{
		{"exact string", "fact: system.product\nexact: PowerEdge R650", StatusMatch, ""},
		{"exact string differs", "fact: system.product\nexact: PowerEdge R750", StatusMismatch,
			`system.product: expected = "PowerEdge R750", got "PowerEdge R650"`},
		{"exact keeps YAML text", "fact: bios.version\nexact: 1.10", StatusMatch, ""},
		{"exact number", "fact: cpu.threads\nexact: 128", StatusMatch, ""},
		{"exact number with units", "fact: memory.installed_bytes\nexact: 256GiB", StatusMatch, ""},
		{"exact bool", "fact: disk.nvme0n1.rotational\nexact: no", StatusMatch, ""},
		{"exact bool differs", "fact: disk.nvme0n1.rotational\nexact: true", StatusMismatch, "expected = true, got false"},
		{"exact list any order", "fact: nics.drivers\nexact: [igb, ixgbe, ixgbe]", StatusMatch, ""},
		{"exact list multiplicity", "fact: nics.drivers\nexact: [igb, ixgbe]", StatusMismatch, `unexpected "ixgbe"`},
		{"exact list numbers", "fact: nics.speed_mbps\nexact: [1000, 10000]", StatusMatch, ""},
		{"min bytes", "fact: memory.installed_bytes\nmin: 256GiB", StatusMatch, ""},
		{"min bytes fails", "fact: memory.usable_bytes\nmin: 64 GiB", StatusMismatch,
			"memory.usable_bytes: expected ≥ 64 GiB, got 1.9 GiB (2035123456 B)"},
		{"min decimal bytes", "fact: memory.installed_bytes\nmin: 274GB", StatusMatch, ""},
		{"max", "fact: pcie.degraded_links\nmax: 0", StatusMatch, ""},
		{"max fails", "fact: cpu.threads\nmax: 64", StatusMismatch, "expected ≤ 64, got 128"},
		{"min and max", "fact: cpu.threads\nmin: 64\nmax: 128", StatusMatch, ""},
		{"range fails", "fact: cpu.threads\nmin: 8\nmax: 16", StatusMismatch, "between 8 and 16"},
		{"min over list", "fact: nics.speed_mbps\nmin: 1000 Mb/s", StatusMatch, ""},
		{"min over list fails on one", "fact: nics.speed_mbps\nmin: 10000", StatusMismatch, "1000 Mb/s is out of range"},
		{"regex", `fact: cpu.model` + "\n" + `regex: 'Gold 6338\b'`, StatusMatch, ""},
		{"regex anchored fails", "fact: cpu.model\nregex: '^AMD'", StatusMismatch, "matching /^AMD/"},
		{"regex over list", "fact: disks.models\nregex: 'SAMSUNG|Dell'", StatusMatch, ""},
		{"regex over list fails on one", "fact: disks.models\nregex: SAMSUNG", StatusMismatch, "does not match"},
		{"in scalar", "fact: system.product\nin: [PowerEdge R650, PowerEdge R650xs]", StatusMatch, ""},
		{"in scalar fails", "fact: system.product\nin: [PowerEdge R750]", StatusMismatch, "one of"},
		{"in list", "fact: nics.drivers\nin: [ixgbe, igb, i40e]", StatusMatch, ""},
		{"in list fails", "fact: nics.drivers\nin: [ixgbe]", StatusMismatch, `"igb" is not one of them`},
		{"in numbers", "fact: cpu.threads\nin: [64, 128]", StatusMatch, ""},
		{"contains", "fact: nics.drivers\ncontains: [ixgbe, ixgbe]", StatusMatch, ""},
		{"contains multiplicity", "fact: nics.drivers\ncontains: [igb, igb]", StatusMismatch, `missing "igb"`},
		{"missing fact", "fact: memory.dimms\nmin: 8", StatusMissing, "memory.dimms: expected ≥ 8, but the inventory has no such fact"},
		{"min on string", "fact: cpu.model\nmin: 3", StatusInvalid, "min needs a number, but cpu.model holds a string"},
		{"regex on number", "fact: cpu.threads\nregex: '1.*'", StatusInvalid, "regex needs a string"},
		{"contains on scalar", "fact: cpu.model\ncontains: [Xeon]", StatusInvalid, "contains needs a list fact"},
		{"exact scalar on list", "fact: nics.drivers\nexact: ixgbe", StatusInvalid, "is a list"},
		{"exact list on scalar", "fact: cpu.threads\nexact: [128]", StatusInvalid, "needs a list fact"},
		{"malformed number", "fact: cpu.threads\nmin: lots", StatusInvalid, `"lots" is not a number`},
		{"byte unit on a count", "fact: cpu.threads\nmin: 64GiB", StatusInvalid, "has a byte unit"},
		{"wrong unit", "fact: nics.speed_mbps\nmin: 10 furlongs", StatusInvalid, `unknown unit "furlongs"`},
		{"bool not a bool", "fact: disk.nvme0n1.rotational\nexact: maybe", StatusInvalid, "not true or false"},
		{"empty list min", "fact: disks.smart_health\nregex: PASSED", StatusInvalid, "empty list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse([]byte("expect:\n  - " + strings.ReplaceAll(tc.item, "\n", "\n    ")))
			if err != nil {
				t.Fatalf("Parse(%q) error: %v", tc.item, err)
			}
			got := Diff(s, facts)
			if len(got) != 1 {
				t.Fatalf("Diff = %d results, want 1", len(got))
			}
			r := got[0]
			if r.Status != tc.want {
				t.Errorf("Diff(%q).Status = %s (%s), want %s", tc.item, r.Status, r.Problem, tc.want)
			}
			if tc.want == StatusMatch && r.Problem != "" {
				t.Errorf("Diff(%q).Problem = %q for a match, want empty", tc.item, r.Problem)
			}
			if !strings.Contains(r.Problem, tc.problem) {
				t.Errorf("Diff(%q).Problem = %q, want it to contain %q", tc.item, r.Problem, tc.problem)
			}
			if r.Severity != SeverityFail {
				t.Errorf("Diff(%q).Severity = %q, want the default fail", tc.item, r.Severity)
			}
		})
	}
}

func TestDiffResultFields(t *testing.T) {
	s, err := Parse([]byte(`
expect:
  - fact: memory.installed_bytes
    min: 512GiB
    severity: degraded
    note: the order said 512 GiB
  - fact: nics.count
    exact: 4
    severity: info
`))
	if err != nil {
		t.Fatal(err)
	}
	v := facts["memory.installed_bytes"]
	want := []Result{
		{Fact: "memory.installed_bytes", Severity: SeverityDegraded, Status: StatusMismatch,
			Expected: "≥ 512 GiB", Actual: "256 GiB", Value: &v,
			Problem: "memory.installed_bytes: expected ≥ 512 GiB, got 256 GiB",
			Note:    "the order said 512 GiB", Line: 3},
		{Fact: "nics.count", Severity: SeverityInfo, Status: StatusMissing, Expected: "= 4",
			Problem: "nics.count: expected = 4, but the inventory has no such fact (not readable on this machine, or a misspelt name)",
			Line:    7},
	}
	if diff := cmp.Diff(want, Diff(s, facts)); diff != "" {
		t.Errorf("Diff mismatch (-want +got):\n%s", diff)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc, field, problem string
	}{
		{"not a mapping", "- a", "(document)", "not a mapping"},
		{"unknown top key", "expected: []", "expected", "unknown key"},
		{"expect not a list", "expect: {fact: a}", "expect", "not a list"},
		{"item not a mapping", "expect: [cpu.model]", "expect[0]", "not a mapping"},
		{"no fact", "expect:\n  - min: 3", "expect[0].fact", "missing"},
		{"bad fact name", "expect:\n  - fact: CPU Model\n    exact: x", "expect[0].fact", "is not a fact name"},
		{"no operator", "expect:\n  - fact: cpu.model", "expect[0]", "no operator"},
		{"two operators", "expect:\n  - fact: cpu.model\n    exact: a\n    regex: b", "expect[0]", "more than one operator"},
		{"unknown item key", "expect:\n  - fact: cpu.model\n    equals: a", "expect[0].equals", "unknown key"},
		{"duplicate key", "expect:\n  - fact: cpu.model\n    min: 1\n    min: 2", "expect[0].min", "set twice"},
		{"bad regex", "expect:\n  - fact: cpu.model\n    regex: '('", "expect[0].regex", "not a valid regular expression"},
		{"bad severity", "expect:\n  - fact: a\n    max: 1\n    severity: fatal", "expect[0].severity", "unknown severity"},
		{"min is a list", "expect:\n  - fact: a\n    min: [1]", "expect[0].min", "not a single value"},
		{"in is a scalar", "expect:\n  - fact: a\n    in: x", "expect[0].in", "not a list"},
		{"nested list", "expect:\n  - fact: a\n    in: [[x]]", "expect[0].in", "not a single value"},
		{"two documents", "expect: []\n---\nexpect: []", "(document)", "more than one YAML document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			var se *Error
			if !errors.As(err, &se) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error = %v, want a *spec.Error wrapping ErrInvalid", tc.doc, err)
			}
			if se.Field != tc.field || !strings.Contains(se.Problem, tc.problem) || se.Line == 0 {
				t.Errorf("Parse(%q) = %s %q (line %d), want field %s problem containing %q with a line",
					tc.doc, se.Field, se.Problem, se.Line, tc.field, tc.problem)
			}
		})
	}
	if _, err := Parse([]byte("expect: [\n")); !errors.Is(err, ErrInvalid) {
		t.Errorf("Parse(bad YAML) error = %v, want ErrInvalid", err)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, doc := range []string{"", "# only a comment\n", "expect:\n", "expect: []"} {
		s, err := Parse([]byte(doc))
		if err != nil || len(s.Items) != 0 {
			t.Errorf("Parse(%q) = %+v, %v; want an empty spec", doc, s, err)
		}
	}
}

func TestMinOf(t *testing.T) {
	s, err := Parse([]byte("expect:\n  - fact: nics.speed_mbps\n    min: 10000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s.MinOf("nics.speed_mbps", UnitMbps); !ok || got != 10000 {
		t.Errorf("MinOf(nics.speed_mbps) = %v, %v; want 10000, true", got, ok)
	}
	if _, ok := s.MinOf("cpu.threads", ""); ok {
		t.Error("MinOf(cpu.threads) found a limit in a spec without one")
	}
}

func TestValueJSON(t *testing.T) {
	in := Facts{"a": String("x"), "b": Number(1.5, UnitBytes), "c": Bool(true), "d": Strings("p", "q"), "e": Strings()}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":"x","b":1.5,"c":true,"d":["p","q"],"e":[]}`; string(b) != want {
		t.Errorf("json.Marshal(facts) = %s, want %s", b, want)
	}
	var out Facts
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	in["b"] = Number(1.5, "") // units are not carried over JSON
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("JSON round trip mismatch (-want +got):\n%s", diff)
	}
}

func TestHumanBytes(t *testing.T) {
	for in, want := range map[float64]string{
		0: "0 B", 512: "512 B", 1024: "1 KiB", 64 << 30: "64 GiB", 1.5 * (1 << 40): "1.5 TiB",
		2035123456: "1.9 GiB (2035123456 B)",
	} {
		if got := HumanBytes(in); got != want {
			t.Errorf("HumanBytes(%v) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("expect:\n  - fact: memory.installed_bytes\n    min: 64GiB\n"))
	f.Add([]byte("expect:\n  - fact: nics.drivers\n    contains: [ixgbe]\n    severity: degraded\n"))
	f.Add([]byte("expect:\n  - fact: cpu.model\n    regex: '^Intel'\n  - fact: disks.count\n    exact: [1, 2]\n"))
	f.Add([]byte("expect: [{fact: a, in: [x, 1, true]}]"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		s, err := Parse(doc)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// A parsed spec must evaluate against any facts without panicking,
		// and give one result per item.
		if got := Diff(s, facts); len(got) != len(s.Items) {
			t.Fatalf("Diff = %d results for %d items", len(got), len(s.Items))
		}
	})
}
