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
