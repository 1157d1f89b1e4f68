package console

import (
	"strings"
	"testing"
)

func TestPower(t *testing.T) {
	tests := []struct {
		name          string
		input         string
		err           error
		wantReboots   int
		wantPoweroffs int
		wantOut       string
	}{
		{name: "reboot y", input: "\n7\ny\n", wantReboots: 1, wantOut: "reboot lab1? [y/N]: y\nrebooting...\n"},
		{name: "reboot yes", input: "\n7\nYes\n", wantReboots: 1, wantOut: "rebooting...\n"},
		{name: "reboot default no", input: "\n7\n\n", wantOut: "reboot lab1? [y/N]: \ncancelled.\n"},
		{name: "reboot n", input: "\n7\nn\n", wantOut: "cancelled.\n"},
		{name: "reboot garbage asks again", input: "\n7\nmaybe\nn\n", wantOut: "please answer y or n.\nreboot lab1? [y/N]: n\ncancelled.\n"},
		{name: "reboot Ctrl-C", input: "\n7\n\x03", wantOut: "reboot lab1? [y/N]: ^C\ncancelled.\n"},
		{name: "reboot fails", input: "\n7\ny\n", err: errTest, wantReboots: 1, wantOut: "error: reboot: test failure\n"},
		{name: "power off y", input: "\n8\ny\n", wantPoweroffs: 1, wantOut: "power off lab1? [y/N]: y\npowering off...\n"},
		{name: "power off n", input: "\n8\nno\n", wantOut: "cancelled.\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakes()
			f.power.err = tt.err
			var got string
			if tt.err == nil && tt.wantReboots+tt.wantPoweroffs > 0 {
				got = run(t, f.console(t), tt.input, f.power.called)
			} else {
				got = run(t, f.console(t), tt.input)
			}
			if f.power.reboots != tt.wantReboots || f.power.poweroffs != tt.wantPoweroffs {
				t.Errorf("input %q: reboots %d, power offs %d; want %d, %d", tt.input, f.power.reboots, f.power.poweroffs, tt.wantReboots, tt.wantPoweroffs)
			}
			if !strings.Contains(got, tt.wantOut) {
				t.Errorf("output for %q lacks %q; output:\n%s", tt.input, tt.wantOut, got)
			}
		})
	}
}

// TestQuietAfterShutdownStarts checks the console neither shows the menu nor
// reads the terminal once a reboot is under way.
func TestQuietAfterShutdownStarts(t *testing.T) {
	f := newFakes()
	s := start(t, f.console(t), "\n7\ny\n1\n")
	waitFor(t, f.power.called, "the reboot")
	s.stop(t)
	if got := after(s.out.String(), "rebooting...\n"); got != "" {
		t.Errorf("console wrote %q after rebooting..., want nothing", got)
	}
	if strings.Contains(s.out.String(), "system: ready") {
		t.Errorf("console read input after the reboot started; output:\n%s", s.out.String())
	}
}
