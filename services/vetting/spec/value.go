package spec

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Kind is a fact value's type.
type Kind string

// Value kinds.
const (
	KindString Kind = "string"
	KindNumber Kind = "number"
	KindBool   Kind = "bool"
	KindList   Kind = "list" // a list of scalars (strings or numbers)
)

// Units facts carry; they only change how values render and which unit
// suffixes an expected value may use.
const (
	UnitBytes = "bytes"
	UnitMHz   = "MHz"
	UnitMbps  = "Mb/s"
	UnitGTs   = "GT/s"
)

// Value is one inventory fact: a string, number, bool or list of scalars.
type Value struct {
	Kind Kind
	Str  string
	Num  float64
	Bool bool
	List []Value
	// Unit is the number's (or number list's) unit, "" for plain counts.
	Unit string
}

// String returns a string fact.
func String(s string) Value { return Value{Kind: KindString, Str: s} }

// Number returns a number fact in unit ("" for a plain count).
func Number(n float64, unit string) Value { return Value{Kind: KindNumber, Num: n, Unit: unit} }

// Int returns a plain count.
func Int(n int) Value { return Number(float64(n), "") }

// Bool returns a boolean fact.
func Bool(b bool) Value { return Value{Kind: KindBool, Bool: b} }

// Strings returns a list of strings.
func Strings(ss ...string) Value {
	v := Value{Kind: KindList, List: []Value{}}
	for _, s := range ss {
		v.List = append(v.List, String(s))
	}
	return v
}

// Numbers returns a list of numbers in unit.
func Numbers(unit string, ns ...float64) Value {
	v := Value{Kind: KindList, List: []Value{}, Unit: unit}
	for _, n := range ns {
		v.List = append(v.List, Number(n, unit))
	}
	return v
}

// Render formats a value for people: bytes in binary units, lists in
// brackets.
func (v Value) Render() string {
	switch v.Kind {
	case KindString:
		return strconv.Quote(v.Str)
	case KindNumber:
		return renderNumber(v.Num, v.Unit)
	case KindBool:
		return strconv.FormatBool(v.Bool)
	case KindList:
		parts := make([]string, len(v.List))
		for i, e := range v.List {
			parts[i] = e.Render()
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return "(none)"
}

func renderNumber(n float64, unit string) string {
	plain := strconv.FormatFloat(n, 'f', -1, 64)
	switch unit {
	case "":
		return plain
	case UnitBytes:
		return HumanBytes(n)
	}
	return plain + " " + unit
}

// HumanBytes renders a byte count with a binary unit, adding the exact count
// when the unit rounds: "64 GiB", "1.9 GiB (2035123456 B)".
func HumanBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v, i := n, 0
	for math.Abs(v) >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if exact := strconv.FormatFloat(v, 'f', -1, 64); i == 0 || v*100 == math.Trunc(v*100) {
		return exact + " " + units[i]
	}
	return fmt.Sprintf("%.1f %s (%s B)", v, units[i], strconv.FormatFloat(n, 'f', -1, 64))
}

// MarshalJSON encodes the value as the natural JSON type.
func (v Value) MarshalJSON() ([]byte, error) {
	switch v.Kind {
	case KindString:
		return json.Marshal(v.Str)
	case KindNumber:
		if math.IsNaN(v.Num) || math.IsInf(v.Num, 0) {
			return []byte("null"), nil
		}
		return json.Marshal(v.Num)
	case KindBool:
		return json.Marshal(v.Bool)
	case KindList:
		if v.List == nil {
			return []byte("[]"), nil
		}
		return json.Marshal(v.List)
	}
	return []byte("null"), nil
}

// UnmarshalJSON decodes a natural JSON value (units are not carried).
func (v *Value) UnmarshalJSON(b []byte) error {
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	got, err := fromJSON(x)
	if err != nil {
		return err
	}
	*v = got
	return nil
}

func fromJSON(x any) (Value, error) {
	switch t := x.(type) {
	case string:
		return String(t), nil
	case float64:
		return Number(t, ""), nil
	case bool:
		return Bool(t), nil
	case nil:
		return Value{}, nil
	case []any:
		v := Value{Kind: KindList, List: []Value{}}
		for _, e := range t {
			ev, err := fromJSON(e)
			if err != nil {
				return Value{}, err
			}
			if ev.Kind == KindList {
				return Value{}, fmt.Errorf("nested lists are not fact values")
			}
			v.List = append(v.List, ev)
		}
		return v, nil
	}
	return Value{}, fmt.Errorf("%T is not a fact value", x)
}

// Facts maps dotted fact names ("memory.installed_bytes") to values.
type Facts map[string]Value
