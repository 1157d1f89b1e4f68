// Package cmdline parses the kernel command line (/proc/cmdline) the way the
// kernel splits it, for stage 1, PID 1, the OTA service, the live image's
// agent and the QEMU test guest: parameters separated by white space, double
// quotes grouping a value that holds spaces (the quotes are dropped), and
// everything after a lone "--" left to init.
package cmdline

import "strings"

// Param is one parameter: key=value, or a flag without '=' (Value "").
type Param struct{ Key, Value string }

// Params are a command line's parameters in order.
type Params []Param

// Parse parses a kernel command line.
func Parse(s string) Params {
	var p Params
	for _, f := range split(s) {
		if f == "--" {
			break
		}
		k, v, _ := strings.Cut(f, "=")
		p = append(p, Param{k, v})
	}
	return p
}

// Value returns the value of key's last occurrence, the one the kernel's
// own parameters take.
func (p Params) Value(key string) (string, bool) {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i].Key == key {
			return p[i].Value, true
		}
	}
	return "", false
}

// Get returns key's value, "" when it is absent or a flag.
func (p Params) Get(key string) string {
	v, _ := p.Value(key)
	return v
}

// First returns the value of key's first occurrence.
func (p Params) First(key string) (string, bool) {
	for _, e := range p {
		if e.Key == key {
			return e.Value, true
		}
	}
	return "", false
}

// Map returns the parameters by key, the last occurrence of each.
func (p Params) Map() map[string]string {
	m := make(map[string]string, len(p))
	for _, e := range p {
		m[e.Key] = e.Value
	}
	return m
}

// split cuts s at white space outside double quotes and drops the quotes.
func split(s string) []string {
	var fields []string
	var b strings.Builder
	quoted, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			have = true
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				fields = append(fields, b.String())
				b.Reset()
				have = false
			}
		default:
			b.WriteRune(r)
			have = true
		}
	}
	if have {
		fields = append(fields, b.String())
	}
	return fields
}
