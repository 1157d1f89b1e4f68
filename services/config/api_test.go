package config

import (
	"errors"
	"strings"
	"testing"
)

func TestAPIValidate(t *testing.T) {
	for _, tc := range []struct {
		name       string
		yaml       string
		wantFields []string
	}{
		{"defaults", "", nil},
		{"operator certificate", "api: {tls_cert: /data/c.pem, tls_key: /data/k.pem}", nil},
		{"cert without key", "api: {tls_cert: /data/c.pem}", []string{"api.tls_key"}},
		{"key without cert", "api: {tls_key: /data/k.pem}", []string{"api.tls_cert"}},
		{"trust the LAN", "api: {trust_lan: true, trusted_networks: [192.168.1.0/24], trusted_role: write}", nil},
		{"trust without networks", "api: {trust_lan: true, trusted_role: read}", []string{"api.trusted_networks"}},
		{"trust without role", "api: {trust_lan: true, trusted_networks: [10.0.0.0/8]}", []string{"api.trusted_role"}},
		{"bad network and role", "api: {trusted_networks: [10.0.0.0], trusted_role: root}", []string{"api.trusted_networks[0]", "api.trusted_role"}},
		{"unknown field", "api: {trust_everyone: true}", []string{"trust_everyone"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.yaml))
			if len(tc.wantFields) == 0 {
				if err != nil {
					t.Errorf("Parse(%q) = %v, want nil", tc.yaml, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) = %v, want ErrInvalid", tc.yaml, err)
			}
			for _, f := range tc.wantFields {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("Parse(%q) = %v, want it to name %s", tc.yaml, err, f)
				}
			}
		})
	}
	c, _ := Parse(strings.NewReader("api: {trusted_networks: [192.168.1.7/24, 10.0.0.0/8]}"))
	if got := c.API.TrustedPrefixes(); len(got) != 2 || got[0].String() != "192.168.1.0/24" {
		t.Errorf("TrustedPrefixes() = %v, want [192.168.1.0/24 10.0.0.0/8]", got)
	}
}
