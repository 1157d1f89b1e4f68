package console

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLogsItem(t *testing.T) {
	tests := []struct {
		name      string
		input     string
		statusErr error
		logErr    error
		wantCalls []logCall
		wantOut   []string // in order
	}{
		{
			name:      "by number",
			input:     "\n3\n2\n\n",
			wantCalls: []logCall{{"dns", 50, false}},
			wantOut:   []string{"--- last 50 lines of dns ---\n", "dns: line one\ndns: line two\n", "--- end of dns ---\n"},
		},
		{
			name:      "by name",
			input:     "\n3\ndhcp\nn\n",
			wantCalls: []logCall{{"dhcp", 50, false}},
			wantOut:   []string{"dhcp: line two\n"},
		},
		{
			name:      "follow until Enter",
			input:     "\n3\n1\ny\n\n",
			wantCalls: []logCall{{"dhcp", 50, true}},
			wantOut:   []string{"press Enter to stop ---\n", "dhcp: line two\n", "--- stopped following dhcp ---\n", "kiln recovery menu"},
		},
		{
			name:      "follow until Ctrl-C",
			input:     "\n3\n1\nyes\n\x03",
			wantCalls: []logCall{{"dhcp", 50, true}},
			wantOut:   []string{"--- stopped following dhcp ---\n", "kiln recovery menu"},
		},
		{
			name:    "unknown service, then back",
			input:   "\n3\nntp\n7\n\n",
			wantOut: []string{`"ntp" is not one of the services listed: type its number (1-2) or its name.` + "\n", `"7" is not one of the services listed`, "kiln recovery menu"},
		},
		{
			name:    "Ctrl-C at the service prompt",
			input:   "\n3\n\x03",
			wantOut: []string{"service (number or name, Enter to go back): ^C\n", "kiln recovery menu"},
		},
		{
			name:      "no service list: a typed name is used",
			input:     "\n3\nsyslog\n\n",
			statusErr: errTest,
			wantCalls: []logCall{{"syslog", 50, false}},
			wantOut:   []string{"cannot list services (test failure); type a service name.\n", "--- last 50 lines of syslog ---\n"},
		},
		{
			name:      "log unreadable",
			input:     "\n3\n1\n\n",
			logErr:    errTest,
			wantCalls: []logCall{{"dhcp", 50, false}},
			wantOut:   []string{"error: reading the log of dhcp: test failure\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakes()
			f.services.statusErr, f.services.logErr = tt.statusErr, tt.logErr
			got := run(t, f.console(t), tt.input)
			if diff := cmp.Diff(tt.wantCalls, f.services.logCalls()); diff != "" {
				t.Errorf("Logs calls for %q (-want +got):\n%s", tt.input, diff)
			}
			rest := got
			for _, w := range tt.wantOut {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output for %q lacks %q (in order); output:\n%s", tt.input, w, got)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestFollowFails(t *testing.T) {
	f := newFakes()
	f.services.logErr = errTest
	s := startHeld(t, f.console(t), "\n3\n1\ny\n")
	s.waitOutput(t, "error: following the log of dhcp: test failure\n\nkiln recovery menu")
}

func TestLogLines(t *testing.T) {
	f := newFakes()
	c := f.console(t)
	c.LogLines = 200
	run(t, c, "\n3\n1\n\n")
	if diff := cmp.Diff([]logCall{{"dhcp", 200, false}}, f.services.logCalls()); diff != "" {
		t.Errorf("Logs calls with LogLines 200 (-want +got):\n%s", diff)
	}
}
