package config

import (
	"strings"
	"testing"
	"time"
)

func TestUpdateSection(t *testing.T) {
	c, err := Parse(strings.NewReader("update:\n  channel: https://updates.example/kiln/stable.json\n  check_every: 6h\n  tries: 2\n  health_deadline: 45s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if u := c.Update; u.Period() != 6*time.Hour || u.BootTries() != 2 || u.Deadline() != 45*time.Second {
		t.Errorf("Parse(update) = %+v", u)
	}
	if u := (Update{}); u.Period() != DefaultUpdateCheckEvery || u.BootTries() != 3 || u.Deadline() != DefaultUpdateHealthDeadline {
		t.Errorf("defaults = %v %v %v", u.Period(), u.BootTries(), u.Deadline())
	}
	for _, tc := range []struct{ yaml, field string }{
		{"update:\n  channel: ftp://x/y\n", "update.channel"},
		{"update:\n  check_every: 10s\n", "update.check_every"},
		{"update:\n  tries: 12\n", "update.tries"},
		{"update:\n  health_deadline: 2h\n", "update.health_deadline"},
	} {
		_, err := Parse(strings.NewReader(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.field+":") {
			t.Errorf("Parse(%q) = %v, want an error naming %s", tc.yaml, err, tc.field)
		}
	}
}
