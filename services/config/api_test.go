package config

import (
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
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

// TestTrustedNetworksAvoidProvisioning: api.trust_lan must never reach a
// provisioning network, where any machine may be hostile (issue 11, finding
// 12); the error names the trusted network's field and the fix.
func TestTrustedNetworksAvoidProvisioning(t *testing.T) {
	const prov = "provisioning:\n  subnets:\n    - {name: hall-a, cidr: 10.0.0.0/24, mode: authoritative, pool: {start: 10.0.0.100, end: 10.0.0.199}}\n" +
		"    - {name: spare, cidr: 10.7.0.0/24, mode: off}\n"
	const ifs = "network:\n  interfaces:\n    - {name: mgmt0, role: management, addresses: [192.168.1.2/24]}\n" +
		"    - {name: prov0, role: provisioning, addresses: [10.0.0.1/24, 10.5.0.1/16]}\n"
	for _, tc := range []struct {
		name      string
		yaml      string
		wantField string // "" = valid
		wantText  string
	}{
		{"management network only", prov + "api: {trust_lan: true, trusted_networks: [192.168.1.0/24], trusted_role: admin}", "", ""},
		{"the subnet itself", prov + "api: {trust_lan: true, trusted_networks: [10.0.0.0/24], trusted_role: admin}", "api.trusted_networks[0]", "provisioning.subnets[0].cidr"},
		{"a wider network", prov + "api: {trust_lan: true, trusted_networks: [192.168.1.0/24, 10.0.0.0/8], trusted_role: read}", "api.trusted_networks[1]", "10.0.0.0/24"},
		{"one address inside", prov + "api: {trust_lan: true, trusted_networks: [10.0.0.77/32], trusted_role: write}", "api.trusted_networks[0]", "set api.trust_lan to false"},
		{"a subnet that is off", prov + "api: {trust_lan: true, trusted_networks: [10.7.0.0/24], trusted_role: read}", "api.trusted_networks[0]", "provisioning.subnets[1].cidr"},
		{"everything", prov + "api: {trust_lan: true, trusted_networks: [0.0.0.0/0], trusted_role: admin}", "api.trusted_networks[0]", "machines there would act as \"admin\""},
		{"a provisioning interface's network", ifs + "api: {trust_lan: true, trusted_networks: [10.5.3.0/24], trusted_role: admin}", "api.trusted_networks[0]", "network.interfaces[1].addresses[1]"},
		{"off: networks are not used", prov + "api: {trust_lan: false, trusted_networks: [10.0.0.0/24], trusted_role: admin}", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			if err := yaml.Unmarshal([]byte(tc.yaml), &c); err != nil {
				t.Fatal(err)
			}
			var got []*FieldError
			c.validateTrust(func(field, problem, fix string) { got = append(got, &FieldError{field, problem, fix}) })
			if tc.wantField == "" {
				if len(got) > 0 {
					t.Errorf("validateTrust(%q) = %v, want nothing", tc.yaml, got)
				}
				return
			}
			if len(got) != 1 || got[0].Field != tc.wantField || !strings.Contains(got[0].Error(), tc.wantText) {
				t.Errorf("validateTrust(%q) = %v, want one error on %s mentioning %q", tc.yaml, got, tc.wantField, tc.wantText)
			}
		})
	}
	// And through Parse, as kiln config validate and every service see it.
	_, err := Parse(strings.NewReader(prov + "api: {trust_lan: true, trusted_networks: [10.0.0.0/16], trusted_role: admin}"))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "api.trusted_networks[0]: 10.0.0.0/16 overlaps the provisioning network 10.0.0.0/24") {
		t.Errorf("Parse(trusted provisioning subnet) = %v, want ErrInvalid naming api.trusted_networks[0]", err)
	}
}
