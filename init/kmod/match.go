package kmod

// Match reports whether s matches the shell glob pattern the way fnmatch(3)
// without flags does, which is how modprobe matches modules.alias patterns:
// '*' matches any run of bytes (including '/'), '?' one byte, "[...]" one byte
// of a set with ranges and '!' or '^' negation, and '\' quotes the next byte.
func Match(pattern, s string) bool {
	// Iterative matcher with single-star backtracking (linear for alias patterns).
	p, i := 0, 0
	starP, starI := -1, 0
	for i < len(s) {
		if p < len(pattern) {
			switch c := pattern[p]; c {
			case '*':
				starP, starI = p, i
				p++
				continue
			case '?':
				p++
				i++
				continue
			case '[':
				if ok, next, valid := matchClass(pattern, p, s[i]); valid {
					if ok {
						p, i = next, i+1
						continue
					}
				} else if s[i] == '[' { // unterminated class: literal '['
					p, i = p+1, i+1
					continue
				}
			case '\\':
				if p+1 < len(pattern) && pattern[p+1] == s[i] {
					p, i = p+2, i+1
					continue
				}
			default:
				if c == s[i] {
					p, i = p+1, i+1
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starI++
		p, i = starP+1, starI
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matchClass matches c against the bracket expression starting at pattern[p]
// ('['). It returns whether c is in the set, the index after the closing ']',
// and false as valid when the class is not terminated.
func matchClass(pattern string, p int, c byte) (ok bool, next int, valid bool) {
	j := p + 1
	neg := false
	if j < len(pattern) && (pattern[j] == '!' || pattern[j] == '^') {
		neg = true
		j++
	}
	matched := false
	first := true
	for ; j < len(pattern); j++ {
		lo := pattern[j]
		if lo == ']' && !first {
			return matched != neg, j + 1, true
		}
		first = false
		if lo == '\\' && j+1 < len(pattern) {
			j++
			lo = pattern[j]
		}
		hi := lo
		if j+2 < len(pattern) && pattern[j+1] == '-' && pattern[j+2] != ']' {
			hi = pattern[j+2]
			if hi == '\\' && j+3 < len(pattern) {
				hi = pattern[j+3]
				j++
			}
			j += 2
		}
		if lo <= c && c <= hi {
			matched = true
		}
	}
	return false, 0, false
}
