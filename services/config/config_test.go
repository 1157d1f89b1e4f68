package config

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // substring; empty means success
	}{
		{"empty gives defaults", "", ""},
		{"ports", "management:\n  https_port: 8443\n  http_port: 8080\n", ""},
		{"unknown field", "hostnme: x\n", "hostnme"},
		{"bad hostname", "hostname: -x\n", "hostname:"},
		{"port range", "management:\n  https_port: 70000\n", "management.https_port"},
		{"same ports", "management:\n  https_port: 80\n  http_port: 80\n", "management.http_port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse(%q) = %v, want nil", tt.in, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) = %v, want ErrInvalid naming %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestEnabled(t *testing.T) {
	on, off := true, false
	c := Config{Services: map[string]Service{"a": {Enabled: &on}, "b": {Enabled: &off}, "c": {}}}
	for _, tt := range []struct {
		name string
		def  bool
		want bool
	}{{"a", false, true}, {"b", true, false}, {"c", true, true}, {"missing", false, false}} {
		if got := c.Enabled(tt.name, tt.def); got != tt.want {
			t.Errorf("Enabled(%q, %v) = %v, want %v", tt.name, tt.def, got, tt.want)
		}
	}
}
