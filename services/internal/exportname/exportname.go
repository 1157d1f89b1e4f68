// Package exportname owns the names of NFS exports kiln serves — root
// images and homes — and how a host names a root image version ("name" or
// "name@N"). The config, the machine database and the nfs service all check
// them with these functions, so a name one accepts the others accept too.
package exportname

import (
	"strconv"
	"strings"
)

// Rule says what Valid accepts, for error messages.
const Rule = "1-64 lower case letters, digits, '.', '_' and '-', not starting with '.' or '-'"

// Valid reports whether s may name a root image or a home: one path
// element (never "." or ".."), so it can be joined below the export root.
func Valid(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// ParseRef splits a host's root image choice, "name" or "name@N"; version 0
// means the promoted one.
func ParseRef(ref string) (name string, version int, ok bool) {
	name, v, pinned := strings.Cut(ref, "@")
	if !Valid(name) {
		return "", 0, false
	}
	if !pinned {
		return name, 0, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || strconv.Itoa(n) != v {
		return "", 0, false
	}
	return name, n, true
}
