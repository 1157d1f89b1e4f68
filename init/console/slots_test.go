package console

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/partitions"
)

func TestRollBack(t *testing.T) {
	tests := []struct {
		name         string
		input        string
		slots        []Slot
		err          error
		wantRollBack []partitions.Slot
		wantReboots  int
		wantOut      string
	}{
		{name: "yes, then reboot", input: "\n4\nyes\ny\n", wantRollBack: []partitions.Slot{partitions.SlotB}, wantReboots: 1, wantOut: "slot b boots next.\nreboot now? [y/N]: y\nrebooting...\n"},
		{name: "yes, no reboot", input: "\n4\nyes\nn\n", wantRollBack: []partitions.Slot{partitions.SlotB}, wantOut: "not rebooting now; the change takes effect at the next boot.\n"},
		{name: "y is not yes", input: "\n4\ny\n", wantOut: "cancelled: nothing changed.\n"},
		{name: "YES is not yes", input: "\n4\nYES\n", wantOut: "cancelled: nothing changed.\n"},
		{name: "empty", input: "\n4\n\n", wantOut: "cancelled: nothing changed.\n"},
		{name: "Ctrl-C", input: "\n4\n\x03", wantOut: "next: ^C\ncancelled.\n"},
		{name: "other slot has no entry", input: "\n4\n", slots: []Slot{
			{Name: partitions.SlotA, Entry: "kiln-1.conf", Version: "1.2.0"},
			{Name: partitions.SlotB},
		}, wantOut: "slot b has no boot entry, so there is nothing to roll back to.\n"},
		{name: "counting entries", input: "\n4\n\n", slots: []Slot{
			{Name: partitions.SlotA, Entry: "kiln-3+2-1.conf", Version: "1.3.0", Counting: true, TriesLeft: 2, TriesDone: 1},
			{Name: partitions.SlotB, Entry: "kiln-2+0-3.conf", Version: "1.2.0", Counting: true, TriesDone: 3},
		}, wantOut: "" +
			"  SLOT  ENTRY            VERSION  TRIES\n" +
			"* a     kiln-3+2-1.conf  1.3.0    2 left, 1 used\n" +
			"  b     kiln-2+0-3.conf  1.2.0    no tries left, 3 used (will not boot)\n"},
		{name: "controller fails", input: "\n4\nyes\n", err: errTest, wantOut: "error: rolling back to slot b: test failure\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakes()
			if tt.slots != nil {
				f.slots.slots = tt.slots
			}
			f.slots.err = tt.err
			var got string
			if tt.wantReboots > 0 {
				got = run(t, f.console(t), tt.input, f.power.called)
			} else {
				got = run(t, f.console(t), tt.input)
			}
			if diff := cmp.Diff(tt.wantRollBack, f.slots.rolledBack); diff != "" {
				t.Errorf("RollBack calls for %q (-want +got):\n%s", tt.input, diff)
			}
			if f.power.reboots != tt.wantReboots {
				t.Errorf("reboots for %q = %d, want %d", tt.input, f.power.reboots, tt.wantReboots)
			}
			if !strings.Contains(got, tt.wantOut) {
				t.Errorf("output for %q lacks %q; output:\n%s", tt.input, tt.wantOut, got)
			}
		})
	}
}

func TestRollBackUnknownRunningSlot(t *testing.T) {
	f := newFakes()
	c := f.console(t)
	c.Slot = ""
	got := run(t, c, "\n4\n")
	if want := "error: the running slot is unknown (no kiln.slot= on the kernel command line)"; !strings.Contains(got, want) {
		t.Errorf("output lacks %q; output:\n%s", want, got)
	}
}
