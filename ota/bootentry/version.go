package bootentry

// VersionCompare is systemd's strverscmp_improved (as in systemd 252): it returns
// <0, 0 or >0 when a is older than, equal to or newer than b. '~' marks
// pre-releases, '-' separates version and release, '^' marks patched releases,
// '.' separates point releases; numeric runs compare numerically, alphabetic
// runs lexically; characters outside [0-9A-Za-z~^.-] are skipped.
func VersionCompare(a, b string) int {
	if a == "" || b == "" {
		return cmpString(a, b)
	}
	i, j := 0, 0
	at := func(s string, k int) byte {
		if k < len(s) {
			return s[k]
		}
		return 0
	}
	for {
		for i < len(a) && !validVersionChar(a[i]) {
			i++
		}
		for j < len(b) && !validVersionChar(b[j]) {
			j++
		}
		for _, sep := range []byte{'~', 0, '-', '^', '.'} {
			ca, cb := at(a, i), at(b, j)
			if sep == 0 {
				// A string that ends is older, except against a '~' segment (handled above).
				if ca == 0 || cb == 0 {
					return cmpInt(int(ca), int(cb))
				}
				continue
			}
			if ca == sep || cb == sep {
				// The side carrying the separator is older ("1~rc" < "1", "1-2" < "1.1").
				if r := cmpBool(ca != sep, cb != sep); r != 0 {
					return r
				}
				i++
				j++
			}
		}
		ca, cb := at(a, i), at(b, j)
		if isDigit(ca) || isDigit(cb) {
			ai, bj := i, j
			for ai < len(a) && isDigit(a[ai]) {
				ai++
			}
			for bj < len(b) && isDigit(b[bj]) {
				bj++
			}
			if r := cmpBool(ai != i, bj != j); r != 0 {
				// An empty numeric segment is older than a non-empty one.
				return r
			}
			for i < ai && a[i] == '0' {
				i++
			}
			for j < bj && b[j] == '0' {
				j++
			}
			if r := cmpInt(ai-i, bj-j); r != 0 {
				return r
			}
			if r := cmpString(a[i:ai], b[j:bj]); r != 0 {
				return r
			}
			i, j = ai, bj
			continue
		}
		ai, bj := i, j
		for ai < len(a) && isAlpha(a[ai]) {
			ai++
		}
		for bj < len(b) && isAlpha(b[bj]) {
			bj++
		}
		n := min(ai-i, bj-j)
		if r := cmpString(a[i:i+n], b[j:j+n]); r != 0 {
			return r
		}
		if r := cmpInt(ai-i, bj-j); r != 0 {
			return r
		}
		i, j = ai, bj
	}
}

func validVersionChar(c byte) bool {
	return isDigit(c) || isAlpha(c) || c == '~' || c == '-' || c == '^' || c == '.'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
