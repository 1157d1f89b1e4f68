package config

import (
	"strings"
	"testing"
	"time"
)

func TestSyslogSection(t *testing.T) {
	c, err := Parse(strings.NewReader("syslog:\n  listen: \"10.0.0.1:1514\"\n  max_age: 48h\n  max_size_mib: 64\n  rate: 20\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Syslog; s.ListenAddr() != "10.0.0.1:1514" || s.Age() != 48*time.Hour || s.SizeBytes() != 64<<20 || s.PerSource() != 20 {
		t.Errorf("Parse(syslog) = %+v", s)
	}
	if s := (Syslog{}); s.ListenAddr() != ":514" || s.Age() != 30*24*time.Hour || s.SizeBytes() != 256<<20 || s.PerSource() != 100 {
		t.Errorf("defaults = %v %v %v %v", s.ListenAddr(), s.Age(), s.SizeBytes(), s.PerSource())
	}
	for _, tc := range []struct{ yaml, field string }{
		{"syslog:\n  listen: \"514\"\n", "syslog.listen"},
		{"syslog:\n  max_age: 10m\n", "syslog.max_age"},
		{"syslog:\n  max_size_mib: -1\n", "syslog.max_size_mib"},
		{"syslog:\n  rate: 1000000\n", "syslog.rate"},
		{"services:\n  syslog: {enabled: true}\n  dns: {enabled: true}\nprovisioning:\n  dns:\n    listen: \":514\"\n", "syslog.listen"},
	} {
		_, err := Parse(strings.NewReader(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.field+":") {
			t.Errorf("Parse(%q) = %v, want an error naming %s", tc.yaml, err, tc.field)
		}
	}
}
