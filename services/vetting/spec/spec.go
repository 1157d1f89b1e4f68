// Package spec is a machine's expected specification and its diff against
// an inventory: a YAML list of expectations on named facts
// ("memory.installed_bytes", "cpu.model", "nics.drivers") with the operators
// exact, min, max, regex, in and contains, each with a severity. Diff gives
// every item its expected and actual value, rendered for people, and a
// status.
//
// The YAML form:
//
//	# expected spec of a PowerEdge R650 in rack 4
//	expect:
//	  - fact: memory.installed_bytes
//	    min: 256GiB
//	  - fact: cpu.model
//	    regex: 'Xeon\(R\) Gold 6338'
//	  - fact: nics.drivers
//	    contains: [ixgbe, ixgbe]
//	  - fact: system.product
//	    in: [PowerEdge R650, PowerEdge R650xs]
//	  - fact: disks.count
//	    exact: 4
//	  - fact: pcie.degraded_links
//	    max: 0
//	    severity: degraded
//	    note: a slot trained below its maximum
//
// Operators (an item may combine min and max; otherwise it has exactly one):
//
//   - exact: a scalar fact equals the value (numbers compare numerically,
//     strings exactly); a list fact holds exactly the listed values in any
//     order (multiset equality).
//   - min, max: a number fact (or every element of a number list, which must
//     not be empty) is ≥ min / ≤ max. Byte facts accept unit suffixes:
//     B, KB, MB, GB, TB, PB (powers of 1000) and KiB, MiB, GiB, TiB, PiB
//     (powers of 1024), e.g. "64GiB" or "960 GB".
//   - regex: a string fact (or every element of a string list, which must not
//     be empty) matches the RE2 expression; unanchored, use ^…$ to anchor.
//   - in: a scalar fact is one of the values; for a list fact every element is.
//   - contains: a list fact contains every listed value (with multiplicity).
//
// Severities: fail (the default) fails the run, degraded marks it degraded,
// info is only reported. Scalars are taken as written in the YAML (so
// version 1.10 stays "1.10") and converted to the fact's type at diff time;
// an operator that does not fit the fact's type (min on a string, contains
// on a scalar) is an invalid item, reported with the item's severity.
package spec

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Severity says what a failed item does to the run's verdict.
type Severity string

// Severities.
const (
	SeverityFail     Severity = "fail"
	SeverityDegraded Severity = "degraded"
	SeverityInfo     Severity = "info"
)

// Item is one expectation on one fact.
type Item struct {
	// Fact names the inventory fact, e.g. "memory.installed_bytes".
	Fact string `json:"fact"`
	// Exact, Min and Max hold scalars as written in the YAML; nil when unset.
	// A list for Exact is in ExactList.
	Exact     *string  `json:"exact,omitempty"`
	ExactList []string `json:"exact_list,omitempty"`
	Min       *string  `json:"min,omitempty"`
	Max       *string  `json:"max,omitempty"`
	Regex     string   `json:"regex,omitempty"`
	In        []string `json:"in,omitempty"`
	Contains  []string `json:"contains,omitempty"`
	Severity  Severity `json:"severity"`
	Note      string   `json:"note,omitempty"`
	// Line is the item's line in the YAML (0 when built in code).
	Line int `json:"line,omitempty"`
}

// Spec is a parsed expected spec.
type Spec struct {
	Items []Item `json:"items"`
}

// Error is a problem in a spec document, phrased for the operator who wrote it.
type Error struct {
	// Field is the path in the document, e.g. "expect[2].min".
	Field   string
	Line    int
	Problem string
	Fix     string
}

func (e *Error) Error() string {
	loc := e.Field
	if e.Line > 0 {
		loc = fmt.Sprintf("%s (line %d)", e.Field, e.Line)
	}
	if e.Fix == "" {
		return fmt.Sprintf("%s: %s", loc, e.Problem)
	}
	return fmt.Sprintf("%s: %s (%s)", loc, e.Problem, e.Fix)
}

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("invalid expected spec")

// Parse reads a spec document. Unknown keys, items without an operator,
// malformed regular expressions and unknown severities are errors; an empty
// document is an empty spec.
func Parse(doc []byte) (Spec, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	if err := dec.Decode(&root); err != nil {
		if err.Error() == "EOF" {
			return Spec{}, nil
		}
		return Spec{}, fmt.Errorf("%w: reading YAML: %v", ErrInvalid, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return Spec{}, fmt.Errorf("%w: %w", ErrInvalid, &Error{Field: "(document)", Line: extra.Line,
			Problem: "more than one YAML document", Fix: "keep one spec per document"})
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = *root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return Spec{}, nil
	}
	fail := func(field string, n *yaml.Node, problem, fix string) (Spec, error) {
		return Spec{}, fmt.Errorf("%w: %w", ErrInvalid, &Error{Field: field, Line: n.Line, Problem: problem, Fix: fix})
	}
	if root.Kind != yaml.MappingNode {
		return fail("(document)", &root, "not a mapping", `start the spec with "expect:" and a list of items`)
	}
	var s Spec
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "expect":
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				continue
			}
			if v.Kind != yaml.SequenceNode {
				return fail("expect", v, "not a list", "make expect a list of items, each starting with \"- fact:\"")
			}
			for j, n := range v.Content {
				it, err := parseItem(fmt.Sprintf("expect[%d]", j), n)
				if err != nil {
					return Spec{}, fmt.Errorf("%w: %w", ErrInvalid, err)
				}
				s.Items = append(s.Items, it)
			}
		default:
			return fail(k.Value, k, "unknown key", "the only top-level key is expect")
		}
	}
	return s, nil
}

func parseItem(field string, n *yaml.Node) (Item, error) {
	fail := func(sub string, at *yaml.Node, problem, fix string) (Item, error) {
		f := field
		if sub != "" {
			f += "." + sub
		}
		return Item{}, &Error{Field: f, Line: at.Line, Problem: problem, Fix: fix}
	}
	if n.Kind != yaml.MappingNode {
		return fail("", n, "not a mapping", "write each item as fact: NAME plus one operator")
	}
	it := Item{Severity: SeverityFail, Line: n.Line}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			return fail(k.Value, k, "set twice", "keep one")
		}
		seen[k.Value] = true
		scalar := func() (string, error) {
			if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
				return "", &Error{Field: field + "." + k.Value, Line: v.Line, Problem: "not a single value",
					Fix: "write one value, e.g. " + k.Value + ": 64GiB"}
			}
			return v.Value, nil
		}
		list := func() ([]string, error) {
			if v.Kind != yaml.SequenceNode {
				return nil, &Error{Field: field + "." + k.Value, Line: v.Line, Problem: "not a list",
					Fix: "write a list, e.g. " + k.Value + ": [a, b]"}
			}
			out := []string{}
			for _, e := range v.Content {
				if e.Kind != yaml.ScalarNode {
					return nil, &Error{Field: field + "." + k.Value, Line: e.Line, Problem: "list element is not a single value",
						Fix: "list plain values only"}
				}
				out = append(out, e.Value)
			}
			return out, nil
		}
		var err error
		switch k.Value {
		case "fact":
			it.Fact, err = scalar()
		case "exact":
			if v.Kind == yaml.SequenceNode {
				it.ExactList, err = list()
			} else {
				var x string
				x, err = scalar()
				it.Exact = &x
			}
		case "min":
			var x string
			x, err = scalar()
			it.Min = &x
		case "max":
			var x string
			x, err = scalar()
			it.Max = &x
		case "regex":
			it.Regex, err = scalar()
			if err == nil {
				if _, err = regexp.Compile(it.Regex); err != nil {
					return fail("regex", v, fmt.Sprintf("not a valid regular expression: %v", err),
						"use RE2 syntax; quote the pattern with single quotes in YAML")
				}
			}
		case "in":
			it.In, err = list()
		case "contains":
			it.Contains, err = list()
		case "severity":
			var x string
			x, err = scalar()
			it.Severity = Severity(x)
			if err == nil && it.Severity != SeverityFail && it.Severity != SeverityDegraded && it.Severity != SeverityInfo {
				return fail("severity", v, fmt.Sprintf("unknown severity %q", x), "use fail, degraded or info")
			}
		case "note":
			it.Note, err = scalar()
		default:
			return fail(k.Value, k, "unknown key",
				"item keys are fact, exact, min, max, regex, in, contains, severity and note")
		}
		if err != nil {
			return Item{}, err
		}
	}
	if it.Fact == "" {
		return fail("fact", n, "missing", "name the inventory fact, e.g. fact: memory.installed_bytes")
	}
	if !validFactName(it.Fact) {
		return fail("fact", n, fmt.Sprintf("%q is not a fact name", it.Fact),
			"fact names are dotted lowercase words, e.g. nics.speed_mbps or nic.eth0.mac")
	}
	ops := 0
	for _, set := range []bool{it.Exact != nil || it.ExactList != nil, it.Min != nil || it.Max != nil,
		it.Regex != "", it.In != nil, it.Contains != nil} {
		if set {
			ops++
		}
	}
	switch {
	case ops == 0:
		return fail("", n, "no operator", "add one of exact, min, max, regex, in or contains")
	case ops > 1:
		return fail("", n, "more than one operator", "split it into one item per operator (only min and max combine)")
	}
	return it, nil
}

func validFactName(s string) bool {
	if len(s) > 200 || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || c == ':') {
			return false
		}
	}
	return true
}

// MinOf returns the first numeric min expectation on fact (and whether there
// is one), for stages that check the same limit live (link speed).
func (s Spec) MinOf(fact string, unit string) (float64, bool) {
	for _, it := range s.Items {
		if it.Fact == fact && it.Min != nil {
			if n, err := parseNumber(*it.Min, unit); err == nil {
				return n, true
			}
		}
	}
	return 0, false
}
