package cmdline

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]string
	}{
		{"", map[string]string{}},
		{"BOOT_IMAGE=/kiln/a/vmlinuz root=PARTUUID=x ro console=tty0 console=ttyS0,115200 panic=10\n",
			map[string]string{"BOOT_IMAGE": "/kiln/a/vmlinuz", "root": "PARTUUID=x", "ro": "", "console": "ttyS0,115200", "panic": "10"}},
		{`dyndbg="file x.c +p"  kiln.host=a	kiln.host=b`, map[string]string{"dyndbg": "file x.c +p", "kiln.host": "b"}},
		{`a="" "b=c d" e==f`, map[string]string{"a": "", "b": "c d", "e": "=f"}},
		{"kiln.slot=a -- single kiln.slot=b", map[string]string{"kiln.slot": "a"}},
		{`x="unterminated value`, map[string]string{"x": "unterminated value"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, Parse(tt.in).Map()); diff != "" {
			t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(`root=PARTUUID=x dyndbg="a b" -- single`)
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range Parse(s) {
			k, v := p.Key, p.Value
			if strings.Contains(k, `"`) || strings.Contains(v, `"`) {
				t.Fatalf("Parse(%q) gave %q=%q: the quotes only group, they are not kept", s, k, v)
			}
		}
	})
}

func TestOccurrences(t *testing.T) {
	p := Parse("kiln.job=/a ro kiln.job=/b")
	if v, ok := p.First("kiln.job"); v != "/a" || !ok {
		t.Errorf("First(kiln.job) = %q, %v, want /a, true", v, ok)
	}
	if v, ok := p.Value("kiln.job"); v != "/b" || !ok {
		t.Errorf("Value(kiln.job) = %q, %v, want /b, true", v, ok)
	}
	if v, ok := p.Value("ro"); v != "" || !ok {
		t.Errorf("Value(ro) = %q, %v, want \"\", true", v, ok)
	}
	if v, ok := p.Value("quiet"); v != "" || ok {
		t.Errorf("Value(quiet) = %q, %v, want \"\", false", v, ok)
	}
	if got := p.Get("kiln.job"); got != "/b" {
		t.Errorf("Get(kiln.job) = %q, want /b", got)
	}
}
