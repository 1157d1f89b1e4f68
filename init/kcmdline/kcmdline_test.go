package kcmdline

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParams(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]string
	}{
		{"", map[string]string{}},
		{"ro quiet\n", map[string]string{"ro": "", "quiet": ""}},
		{`a=1 dyndbg="file x.c +p" b=2=3`, map[string]string{"a": "1", "dyndbg": "file x.c +p", "b": "2=3"}},
		{"a=1 a=2 -- a=3 single", map[string]string{"a": "2"}},
		{"\ta=1\t\tb", map[string]string{"a": "1", "b": ""}},
		{`x=""`, map[string]string{"x": ""}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, Params(tt.in)); diff != "" {
			t.Errorf("Params(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}
