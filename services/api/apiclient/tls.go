package apiclient

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Fingerprint is the SHA-256 of a DER certificate, as mgmt prints it.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// SameFingerprint compares fingerprints written with or without colons, any case.
func SameFingerprint(a, b string) bool {
	norm := func(s string) string { return strings.ToUpper(strings.NewReplacer(":", "", " ", "").Replace(s)) }
	return norm(a) != "" && norm(a) == norm(b)
}

// PinnedTransport trusts a certificate a system CA vouches for or, failing
// that, only the one whose fingerprint is pinned. seen (if not nil)
// receives the leaf's fingerprint and whether a CA vouched for it, and then
// any certificate is accepted while pinned is "": kiln login decides.
func PinnedTransport(host, pinned string, seen func(fp string, caSigned bool)) *http.Transport {
	return &http.Transport{
		TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, // verified below: CA chain or pinned fingerprint
			MinVersion:         tls.VersionTLS12,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("the server sent no certificate")
				}
				leaf := cs.PeerCertificates[0]
				fp := Fingerprint(leaf.Raw)
				inter := x509.NewCertPool()
				for _, c := range cs.PeerCertificates[1:] {
					inter.AddCert(c)
				}
				_, caErr := leaf.Verify(x509.VerifyOptions{DNSName: host, Intermediates: inter})
				if seen != nil {
					seen(fp, caErr == nil)
				}
				switch {
				case pinned == "" && seen != nil: // kiln login decides
					return nil
				case pinned == "" && caErr == nil:
					return nil
				case SameFingerprint(pinned, fp):
					return nil
				case pinned == "":
					return fmt.Errorf("the certificate is not signed by a CA this machine trusts (%v): run kiln login to trust its fingerprint", caErr)
				}
				return fmt.Errorf("the certificate's SHA-256 fingerprint is %s, not %s as trusted at kiln login: if the appliance's certificate was replaced, run kiln login again", fp, pinned)
			},
		},
		Proxy:               http.ProxyFromEnvironment,
		TLSHandshakeTimeout: 10 * time.Second,
	}
}
