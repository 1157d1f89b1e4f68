package console

import (
	"strings"
	"testing"
	"time"
)

func TestAge(t *testing.T) {
	tests := []struct {
		ago  time.Duration
		want string
	}{
		{0, "0s"},
		{42*time.Second + 900*time.Millisecond, "42s"},
		{5*time.Minute + 3*time.Second, "5m03s"},
		{2*time.Hour + 7*time.Minute, "2h07m"},
		{3*24*time.Hour + 4*time.Hour + 59*time.Minute, "3d04h"},
		{-time.Minute, "0s"}, // clock stepped back
	}
	for _, tt := range tests {
		if got := age(testNow.Add(-tt.ago), testNow); got != tt.want {
			t.Errorf("age(now-%v) = %q, want %q", tt.ago, got, tt.want)
		}
	}
	if got := age(time.Time{}, testNow); got != "-" {
		t.Errorf("age(zero) = %q, want %q", got, "-")
	}
}

func TestReadiness(t *testing.T) {
	tests := []struct {
		name string
		st   Status
		want string
	}{
		{"ready", Status{Ready: true}, "ready"},
		{"some ready", Status{Services: []Service{{Ready: true}, {}, {}}}, "not ready (1 of 3 services ready)"},
		{"nothing supervised", Status{}, "not ready (0 of 0 services ready)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := readiness(tt.st); got != tt.want {
				t.Errorf("readiness(%+v) = %q, want %q", tt.st, got, tt.want)
			}
		})
	}
}

func TestStatusItem(t *testing.T) {
	t.Run("table", func(t *testing.T) {
		got := after(run(t, newFakes().console(t), "\n1\n"), "choice [1-8, q]: 1\n")
		want := "system: ready\n" +
			"SERVICE  STATE    PID  RESTARTS  SINCE  LAST EXIT\n" +
			"dhcp     ready    412  0         5m03s  -\n" +
			"dns      backoff  -    3         12s    exit status 1\n"
		if !strings.HasPrefix(got, want) {
			t.Errorf("status item printed:\n%s\nwant it to start with:\n%s", got, want)
		}
	})
	t.Run("supervisor down", func(t *testing.T) {
		f := newFakes()
		f.services.statusErr = errTest
		got := run(t, f.console(t), "\n1\n")
		want := "error: reading service status (the supervisor may be down; its log is on the console): test failure\n"
		if !strings.Contains(got, want) {
			t.Errorf("status item with a failing source lacks %q; output:\n%s", want, got)
		}
		if !strings.Contains(got, "status      unknown (test failure)\n") {
			t.Errorf("banner with a failing source lacks the error; output:\n%s", got)
		}
	})
}
