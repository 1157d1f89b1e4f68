package console

import (
	"strings"
	"testing"
)

func TestFactoryReset(t *testing.T) {
	tests := []struct {
		name        string
		answer      string // typed at "confirm: "
		wantWipes   int
		wantReboots int
	}{
		{"exact phrase", "wipe lab1\n", 1, 1},
		{"exact phrase, CR LF", "wipe lab1\r\n", 1, 1},
		{"yes", "yes\n", 0, 0},
		{"y", "y\n", 0, 0},
		{"empty", "\n", 0, 0},
		{"wrong host", "wipe lab2\n", 0, 0},
		{"upper case", "WIPE LAB1\n", 0, 0},
		{"leading space", " wipe lab1\n", 0, 0},
		{"trailing space", "wipe lab1 \n", 0, 0},
		{"extra word", "wipe lab1 now\n", 0, 0},
		{"only wipe", "wipe\n", 0, 0},
		{"Ctrl-C", "wipe lab1\x03", 0, 0},
		{"end of input mid-phrase", "wipe la", 0, 0}, // the partial line is read as a line
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakes()
			c := f.console(t)
			var got string
			if tt.wantReboots > 0 {
				got = run(t, c, "\n5\n"+tt.answer, f.power.called)
			} else {
				got = run(t, c, "\n5\n"+tt.answer)
			}
			if f.wiper.calls != tt.wantWipes || f.power.reboots != tt.wantReboots {
				t.Errorf("factory reset with %q: wipes %d, reboots %d; want %d, %d", tt.answer, f.wiper.calls, f.power.reboots, tt.wantWipes, tt.wantReboots)
			}
			if !strings.Contains(got, "to confirm, type exactly: wipe lab1\n") {
				t.Errorf("factory reset does not show the phrase; output:\n%s", got)
			}
			if tt.wantWipes == 0 && !strings.Contains(got, "nothing was erased") && !strings.Contains(got, "cancelled") {
				t.Errorf("factory reset with %q does not say it cancelled; output:\n%s", tt.answer, got)
			}
		})
	}
}

func TestFactoryResetFails(t *testing.T) {
	f := newFakes()
	f.wiper.err = errTest
	got := run(t, f.console(t), "\n5\nwipe lab1\n")
	want := "error: factory reset failed, the data partition may be partly erased (try again, or use the shell): test failure\n"
	if !strings.Contains(got, want) {
		t.Errorf("output lacks %q; output:\n%s", want, got)
	}
	if f.power.reboots != 0 {
		t.Errorf("reboots after a failed wipe = %d, want 0", f.power.reboots)
	}
}

func TestFactoryResetWithoutHostname(t *testing.T) {
	f := newFakes()
	c := f.console(t)
	c.Hostname = ""
	run(t, c, "\n5\nwipe kiln\n", f.power.called)
	if f.wiper.calls != 1 {
		t.Errorf("wipes with phrase %q = %d, want 1", "wipe kiln", f.wiper.calls)
	}
}
