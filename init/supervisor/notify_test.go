package supervisor

import (
	"bytes"
	"testing"
)

func TestParseNotice(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want notice
	}{
		{"READY=1", notice{ready: true}},
		{"READY=0", notice{}},
		{"STATUS=serving 3 clients\nREADY=1\n", notice{ready: true, hasStatus: true, status: "serving 3 clients"}},
		{"STATUS=", notice{hasStatus: true}},
		{"STOPPING=1", notice{stopping: true}},
		{"WATCHDOG=1", notice{watchdog: true}},
		{"MAINPID=42\nERRNO=2\nnonsense\n\n", notice{}},
		{"STATUS=a=b", notice{hasStatus: true, status: "a=b"}},
	} {
		if got := parseNotice([]byte(tc.in)); got != tc.want {
			t.Errorf("parseNotice(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func FuzzParseNotice(f *testing.F) {
	f.Add([]byte("STATUS=x\nREADY=1\nWATCHDOG=1\nSTOPPING=1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := parseNotice(b)
		lines := bytes.Split(b, []byte("\n"))
		// The last assignment of a key wins, as in systemd.
		var ready bool
		for _, l := range lines {
			if v, ok := bytes.CutPrefix(l, []byte("READY=")); ok {
				ready = string(v) == "1"
			}
		}
		if n.ready != ready {
			t.Errorf("parseNotice(%q).ready = %v, want %v", b, n.ready, ready)
		}
		if n.pid != 0 {
			t.Errorf("parseNotice(%q) set pid %d from the payload", b, n.pid)
		}
	})
}
