// Package kcmdline splits the kernel command line (/proc/cmdline) into
// parameters the way the kernel does, for the initramfs programs.
package kcmdline

import "strings"

// Fields splits s into parameters. Double quotes group a value with spaces,
// as the kernel allows; they are removed.
func Fields(s string) []string {
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

// Params maps every key=value parameter before "--" (what follows is for
// init) to its value; flags without '=' map to "". A later parameter wins.
func Params(s string) map[string]string {
	p := map[string]string{}
	for _, f := range Fields(s) {
		if f == "--" {
			break
		}
		k, v, _ := strings.Cut(f, "=")
		p[k] = v
	}
	return p
}
