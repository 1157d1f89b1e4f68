package exportname

import (
	"strings"
	"testing"
)

func TestParseRef(t *testing.T) {
	tests := []struct {
		in      string
		name    string
		version int
		ok      bool
	}{
		{"contest", "contest", 0, true},
		{"contest@3", "contest", 3, true},
		{"debian-12.5_x", "debian-12.5_x", 0, true},
		{"", "", 0, false},
		{"contest@", "", 0, false},
		{"contest@0", "", 0, false},
		{"contest@03", "", 0, false},
		{"contest@-1", "", 0, false},
		{"Contest", "", 0, false},
		{".hidden", "", 0, false},
		{"a/b", "", 0, false},
		{"..", "", 0, false},
		{strings.Repeat("a", 65), "", 0, false},
	}
	for _, tt := range tests {
		name, v, ok := ParseRef(tt.in)
		if name != tt.name || v != tt.version || ok != tt.ok {
			t.Errorf("ParseRef(%q) = %q, %d, %v; want %q, %d, %v", tt.in, name, v, ok, tt.name, tt.version, tt.ok)
		}
	}
}
