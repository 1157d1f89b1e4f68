package console

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadLine(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // lines, then "<interrupt>" or "<no input>" for errors
	}{
		{"lines", "a\nbc\n", []string{"a", "bc", "<no input>"}},
		{"CR LF", "yes\r\n", []string{"yes", "<no input>"}},
		{"Ctrl-C drops the line", "wipe\x03next\n", []string{"<interrupt>", "next", "<no input>"}},
		{"partial line at end of input", "wipe la", []string{"wipe la", "<no input>"}},
		{"empty", "", []string{"<no input>"}},
		{"long line is cut", strings.Repeat("x", 3000) + "\n", []string{strings.Repeat("x", maxLine), "<no input>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tt.in))
			for i, w := range tt.want {
				r := readLine(br)
				got := r.line
				switch {
				case errors.Is(r.err, errInterrupt):
					got = "<interrupt>"
				case errors.Is(r.err, errNoInput):
					got = "<no input>"
					if !errors.Is(r.err, io.EOF) {
						t.Errorf("readLine(%q) #%d error %v does not wrap io.EOF", tt.in, i, r.err)
					}
				case r.err != nil:
					got = r.err.Error()
				}
				if got != w {
					t.Errorf("readLine(%q) #%d = %.40q, want %.40q", tt.in, i, got, w)
				}
			}
		})
	}
}
