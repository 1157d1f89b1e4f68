package config

import (
	"fmt"
	"net/netip"
)

// API configures the operator API and web UI that the management service
// serves over HTTPS.
type API struct {
	// TLSCert and TLSKey are PEM files of an operator-supplied certificate and
	// its key; set both or neither. Empty: the self-signed certificate kiln
	// makes on first start (<state>/mgmt/tls).
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// TrustLAN lets requests without credentials that come from
	// TrustedNetworks act with TrustedRole. It is off unless set to true here.
	TrustLAN bool `yaml:"trust_lan"`
	// TrustedNetworks are the CIDR prefixes TrustLAN applies to, e.g. 192.168.1.0/24.
	TrustedNetworks []string `yaml:"trusted_networks"`
	// TrustedRole is read, write or admin.
	TrustedRole string `yaml:"trusted_role"`
}

// TrustedPrefixes parses TrustedNetworks (Validate has checked them).
func (a API) TrustedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, n := range a.TrustedNetworks {
		if p, err := netip.ParsePrefix(n); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

func (a API) validate(add func(field, problem, fix string)) {
	if (a.TLSCert == "") != (a.TLSKey == "") {
		field := "api.tls_key"
		if a.TLSCert == "" {
			field = "api.tls_cert"
		}
		add(field, "only one of api.tls_cert and api.tls_key is set", "set both to PEM files of your certificate and its key, or neither to use the self-signed certificate")
	}
	for i, n := range a.TrustedNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			add(fmt.Sprintf("api.trusted_networks[%d]", i), fmt.Sprintf("%q is not a network prefix", n), "write it as address/length, e.g. 192.168.1.0/24")
		}
	}
	switch a.TrustedRole {
	case "", "read", "write", "admin":
	default:
		add("api.trusted_role", fmt.Sprintf("unknown role %q", a.TrustedRole), "use read, write or admin")
	}
	if !a.TrustLAN {
		return
	}
	if len(a.TrustedNetworks) == 0 {
		add("api.trusted_networks", "api.trust_lan is true but no network is listed", "list the networks whose users need no login, e.g. [192.168.1.0/24], or set api.trust_lan to false")
	}
	if a.TrustedRole == "" {
		add("api.trusted_role", "api.trust_lan is true but no role is given", "say what those users may do: read, write or admin")
	}
}

// validateTrust refuses trusted networks that reach into a provisioning
// network: machines there are untrusted by design (anyone can plug one in or
// PXE-boot one), so api.trust_lan would let them act with api.trusted_role
// without logging in.
func (c Config) validateTrust(add func(field, problem, fix string)) {
	if !c.API.TrustLAN {
		return
	}
	type provNet struct {
		field  string
		prefix netip.Prefix
	}
	var prov []provNet
	for i, s := range c.Provisioning.Subnets {
		if p := s.Prefix(); p.IsValid() {
			prov = append(prov, provNet{fmt.Sprintf("provisioning.subnets[%d].cidr", i), p.Masked()})
		}
	}
	for i, itf := range c.Network.Interfaces {
		if itf.Role != RoleProvisioning {
			continue
		}
		for j, a := range itf.Addresses {
			if p, err := netip.ParsePrefix(a); err == nil {
				prov = append(prov, provNet{fmt.Sprintf("network.interfaces[%d].addresses[%d]", i, j), p.Masked()})
			}
		}
	}
	for i, n := range c.API.TrustedNetworks {
		t, err := netip.ParsePrefix(n)
		if err != nil {
			continue // reported by API.validate
		}
		t = t.Masked()
		for _, p := range prov {
			if t.Overlaps(p.prefix) {
				add(fmt.Sprintf("api.trusted_networks[%d]", i),
					fmt.Sprintf("%s overlaps the provisioning network %s (%s): machines there would act as %q without logging in", t, p.prefix, p.field, c.API.TrustedRole),
					"list only management networks in api.trusted_networks (none of the provisioning subnets), or set api.trust_lan to false")
				break
			}
		}
	}
}
