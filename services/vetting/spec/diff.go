package spec

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// Status is an item's outcome.
type Status string

// Item outcomes.
const (
	StatusMatch    Status = "match"
	StatusMismatch Status = "mismatch"
	// StatusMissing: the inventory has no such fact (not readable on this
	// machine, or the name is wrong).
	StatusMissing Status = "missing"
	// StatusInvalid: the item cannot be evaluated against the fact's type
	// (min on a string, a malformed number).
	StatusInvalid Status = "invalid"
)

// Result is one item's expected-vs-actual line.
type Result struct {
	Fact     string   `json:"fact"`
	Severity Severity `json:"severity"`
	Status   Status   `json:"status"`
	// Expected and Actual are rendered for people ("≥ 64 GiB", "2 GiB");
	// Actual is empty when the fact is missing.
	Expected string `json:"expected"`
	Actual   string `json:"actual,omitempty"`
	// Value is the actual fact value, nil when missing.
	Value *Value `json:"value,omitempty"`
	// Problem explains a non-match in one sentence naming the fact.
	Problem string `json:"problem,omitempty"`
	Note    string `json:"note,omitempty"`
	Line    int    `json:"line,omitempty"`
}

// OK reports whether the item matched.
func (r Result) OK() bool { return r.Status == StatusMatch }

// Diff evaluates every item of s against facts, in the spec's order.
func Diff(s Spec, facts Facts) []Result {
	out := make([]Result, 0, len(s.Items))
	for _, it := range s.Items {
		out = append(out, evaluate(it, facts))
	}
	return out
}

func evaluate(it Item, facts Facts) Result {
	r := Result{Fact: it.Fact, Severity: it.Severity, Note: it.Note, Line: it.Line}
	if r.Severity == "" {
		r.Severity = SeverityFail
	}
	v, ok := facts[it.Fact]
	r.Expected = expectedText(it, v, ok)
	if !ok {
		r.Status = StatusMissing
		r.Problem = fmt.Sprintf("%s: expected %s, but the inventory has no such fact (not readable on this machine, or a misspelt name)",
			it.Fact, r.Expected)
		return r
	}
	val := v
	r.Value = &val
	r.Actual = v.Render()
	match, problem, err := check(it, v)
	switch {
	case err != nil:
		r.Status = StatusInvalid
		r.Problem = fmt.Sprintf("%s: cannot check: %v", it.Fact, err)
	case match:
		r.Status = StatusMatch
	default:
		r.Status = StatusMismatch
		r.Problem = fmt.Sprintf("%s: expected %s, got %s", it.Fact, r.Expected, r.Actual)
		if problem != "" {
			r.Problem += " (" + problem + ")"
		}
	}
	return r
}

// check returns whether v satisfies it, an optional detail for a mismatch,
// and an error when the item does not fit the value's type.
func check(it Item, v Value) (bool, string, error) {
	switch {
	case it.Exact != nil:
		if v.Kind == KindList {
			return false, "", fmt.Errorf("exact with one value needs a single-valued fact, %s is a list (write exact: [a, b])", it.Fact)
		}
		want, err := convert(*it.Exact, v.Kind, v.Unit)
		if err != nil {
			return false, "", err
		}
		return equal(v, want), "", nil
	case it.ExactList != nil:
		if v.Kind != KindList {
			return false, "", fmt.Errorf("exact with a list needs a list fact, %s is a %s", it.Fact, v.Kind)
		}
		want, err := convertAll(it.ExactList, v)
		if err != nil {
			return false, "", err
		}
		missing, extra := multisetDiff(v.List, want)
		if len(missing) == 0 && len(extra) == 0 {
			return true, "", nil
		}
		return false, describeSetDiff(missing, extra), nil
	case it.Min != nil || it.Max != nil:
		return checkRange(it, v)
	case it.Regex != "":
		re, err := regexp.Compile(it.Regex)
		if err != nil {
			return false, "", fmt.Errorf("regex: %v", err)
		}
		elems, err := elements(v, KindString, "regex", it.Fact)
		if err != nil {
			return false, "", err
		}
		for _, e := range elems {
			if !re.MatchString(e.Str) {
				if v.Kind == KindList {
					return false, fmt.Sprintf("%s does not match", e.Render()), nil
				}
				return false, "", nil
			}
		}
		return true, "", nil
	case it.In != nil:
		elems := []Value{v}
		if v.Kind == KindList {
			elems = v.List
		}
		for _, e := range elems {
			found := false
			for _, raw := range it.In {
				want, err := convert(raw, e.Kind, e.Unit)
				if err != nil {
					return false, "", err
				}
				if equal(e, want) {
					found = true
					break
				}
			}
			if !found {
				if v.Kind == KindList {
					return false, fmt.Sprintf("%s is not one of them", e.Render()), nil
				}
				return false, "", nil
			}
		}
		return true, "", nil
	case it.Contains != nil:
		if v.Kind != KindList {
			return false, "", fmt.Errorf("contains needs a list fact, %s is a %s", it.Fact, v.Kind)
		}
		want, err := convertAll(it.Contains, v)
		if err != nil {
			return false, "", err
		}
		missing, _ := multisetDiff(v.List, want)
		if len(missing) == 0 {
			return true, "", nil
		}
		return false, describeSetDiff(missing, nil), nil
	}
	return false, "", fmt.Errorf("the item has no operator")
}

func checkRange(it Item, v Value) (bool, string, error) {
	op := "min"
	if it.Min == nil {
		op = "max"
	}
	elems, err := elements(v, KindNumber, op, it.Fact)
	if err != nil {
		return false, "", err
	}
	var lo, hi float64 = math.Inf(-1), math.Inf(1)
	if it.Min != nil {
		if lo, err = parseNumber(*it.Min, v.Unit); err != nil {
			return false, "", fmt.Errorf("min: %w", err)
		}
	}
	if it.Max != nil {
		if hi, err = parseNumber(*it.Max, v.Unit); err != nil {
			return false, "", fmt.Errorf("max: %w", err)
		}
	}
	for _, e := range elems {
		if e.Num < lo || e.Num > hi {
			if v.Kind == KindList {
				return false, fmt.Sprintf("%s is out of range", e.Render()), nil
			}
			return false, "", nil
		}
	}
	return true, "", nil
}

// elements returns the scalars an element-wise operator applies to: the
// value itself, or a non-empty list's elements, all of kind want.
func elements(v Value, want Kind, op, fact string) ([]Value, error) {
	elems := []Value{v}
	if v.Kind == KindList {
		if len(v.List) == 0 {
			return nil, fmt.Errorf("%s is an empty list, so %s has nothing to check", fact, op)
		}
		elems = v.List
	}
	for _, e := range elems {
		if e.Kind != want {
			return nil, fmt.Errorf("%s needs a %s, but %s holds a %s", op, want, fact, e.Kind)
		}
	}
	return elems, nil
}

// listElemKind guesses the element kind of a (possibly empty) list.
func listElemKind(v Value) (Kind, string) {
	if len(v.List) > 0 {
		return v.List[0].Kind, v.List[0].Unit
	}
	if v.Unit != "" {
		return KindNumber, v.Unit
	}
	return KindString, ""
}

func convertAll(raws []string, list Value) ([]Value, error) {
	k, unit := listElemKind(list)
	out := make([]Value, 0, len(raws))
	for _, raw := range raws {
		w, err := convert(raw, k, unit)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// convert interprets an expected scalar as written in the YAML as a value of
// kind (and unit).
func convert(raw string, kind Kind, unit string) (Value, error) {
	switch kind {
	case KindString:
		return String(raw), nil
	case KindNumber:
		n, err := parseNumber(raw, unit)
		if err != nil {
			return Value{}, err
		}
		return Number(n, unit), nil
	case KindBool:
		switch strings.ToLower(strings.TrimSpace(raw)) {
		case "true", "yes", "on":
			return Bool(true), nil
		case "false", "no", "off":
			return Bool(false), nil
		}
		return Value{}, fmt.Errorf("expected value %q is not true or false", raw)
	}
	return Value{}, fmt.Errorf("cannot compare with a %s", kind)
}

func equal(a, b Value) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case KindString:
		return a.Str == b.Str
	case KindNumber:
		return a.Num == b.Num || math.Abs(a.Num-b.Num) <= 1e-9*math.Max(math.Abs(a.Num), math.Abs(b.Num))
	case KindBool:
		return a.Bool == b.Bool
	}
	return false
}

// multisetDiff returns the wanted values missing from have and the values of
// have not wanted.
func multisetDiff(have, want []Value) (missing, extra []Value) {
	used := make([]bool, len(have))
	for _, w := range want {
		found := false
		for i, h := range have {
			if !used[i] && equal(h, w) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			missing = append(missing, w)
		}
	}
	for i, h := range have {
		if !used[i] {
			extra = append(extra, h)
		}
	}
	return missing, extra
}

func describeSetDiff(missing, extra []Value) string {
	render := func(vs []Value) string {
		parts := make([]string, len(vs))
		for i, v := range vs {
			parts[i] = v.Render()
		}
		sort.Strings(parts)
		return strings.Join(parts, ", ")
	}
	var parts []string
	if len(missing) > 0 {
		parts = append(parts, "missing "+render(missing))
	}
	if len(extra) > 0 {
		parts = append(parts, "unexpected "+render(extra))
	}
	return strings.Join(parts, "; ")
}

// expectedText renders an item's expectation, in the fact's unit when the
// fact is known.
func expectedText(it Item, v Value, known bool) string {
	kind, unit := v.Kind, v.Unit
	if v.Kind == KindList {
		kind, unit = listElemKind(v)
	}
	show := func(raw string) string {
		if !known {
			return raw
		}
		w, err := convert(raw, kind, unit)
		if err != nil {
			return strconv.Quote(raw)
		}
		return w.Render()
	}
	showList := func(raws []string) string {
		parts := make([]string, len(raws))
		for i, r := range raws {
			parts[i] = show(r)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	each := ""
	if v.Kind == KindList {
		each = "each "
	}
	switch {
	case it.Exact != nil:
		return "= " + show(*it.Exact)
	case it.ExactList != nil:
		return "exactly " + showList(it.ExactList)
	case it.Min != nil && it.Max != nil:
		return fmt.Sprintf("%sbetween %s and %s", each, show(*it.Min), show(*it.Max))
	case it.Min != nil:
		return each + "≥ " + show(*it.Min)
	case it.Max != nil:
		return each + "≤ " + show(*it.Max)
	case it.Regex != "":
		return each + "matching /" + it.Regex + "/"
	case it.In != nil:
		return each + "one of " + showList(it.In)
	case it.Contains != nil:
		return "containing " + showList(it.Contains)
	}
	return "?"
}

var byteUnits = map[string]float64{
	"b":  1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "pib": 1 << 50,
}

// parseNumber reads an expected number, with an optional unit suffix: byte
// units for byte facts, or the fact's own unit ("10000 Mb/s").
func parseNumber(raw, unit string) (float64, error) {
	s := strings.TrimSpace(raw)
	i := strings.IndexFunc(s, func(r rune) bool {
		return !(unicode.IsDigit(r) || r == '.' || r == '-' || r == '+' || r == 'e' || r == 'E' || r == '_')
	})
	num, suffix := s, ""
	if i >= 0 {
		num, suffix = strings.TrimSpace(s[:i]), strings.TrimSpace(s[i:])
	}
	n, err := strconv.ParseFloat(strings.ReplaceAll(num, "_", ""), 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
		return 0, fmt.Errorf("expected value %q is not a number (write e.g. 64GiB, 960GB or 10000)", raw)
	}
	if suffix == "" {
		return n, nil
	}
	if mult, ok := byteUnits[strings.ToLower(suffix)]; ok {
		if unit != UnitBytes {
			return 0, fmt.Errorf("expected value %q has a byte unit, but the fact is measured in %s", raw, unitName(unit))
		}
		return n * mult, nil
	}
	if unit != "" && strings.EqualFold(strings.ReplaceAll(suffix, " ", ""), strings.ReplaceAll(unit, " ", "")) {
		return n, nil
	}
	return 0, fmt.Errorf("expected value %q: unknown unit %q for a fact measured in %s", raw, suffix, unitName(unit))
}

func unitName(unit string) string {
	if unit == "" {
		return "plain numbers"
	}
	return unit
}
