package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNTPServers(t *testing.T) {
	c, err := Parse(strings.NewReader("ntp:\n  servers: [ntp.example, 192.0.2.123, \"ntp2.example:10123\", \"2001:db8::123\", \"[2001:db8::124]:123\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ntp.example:123", "192.0.2.123:123", "ntp2.example:10123", "[2001:db8::123]:123", "[2001:db8::124]:123"}
	if diff := cmp.Diff(want, c.NTP.ServerAddrs()); diff != "" {
		t.Errorf("ServerAddrs() (-want +got):\n%s", diff)
	}
	if got := c.NTP.ListenAddr(); got != ":123" {
		t.Errorf("ListenAddr() = %q, want :123", got)
	}
	if !c.NTPByDefault() {
		t.Error("NTPByDefault() = false with ntp.servers set, want true")
	}
	if Default().NTPByDefault() {
		t.Error("Default().NTPByDefault() = true without subnets or servers, want false")
	}
}

func TestNTPInvalid(t *testing.T) {
	for _, tc := range []struct{ yaml, field string }{
		{"ntp:\n  servers: [\"ntp.example:0\"]\n", "ntp.servers[0]"},
		{"ntp:\n  servers: [\"ntp.example:http\"]\n", "ntp.servers[0]"},
		{"ntp:\n  servers: [\"bad host\"]\n", "ntp.servers[0]"},
		{"ntp:\n  servers: [\"fe80::1%eth0\"]\n", "ntp.servers[0]"},
		{"ntp:\n  servers: [ntp.example, \"ntp.example:123\"]\n", "ntp.servers[1]"},
		{"ntp:\n  listen: \"123\"\n", "ntp.listen"},
		{"ntp:\n  listen: \"ntp.example:123\"\n", "ntp.listen"},
		{"ntp:\n  servers: [ntp.example]\nservices:\n  tftp: {enabled: true}\nprovisioning:\n  tftp:\n    listen: \":123\"\n", "ntp.listen"},
	} {
		_, err := Parse(strings.NewReader(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.field+":") {
			t.Errorf("Parse(%q) = %v, want an error naming %s", tc.yaml, err, tc.field)
		}
	}
}
