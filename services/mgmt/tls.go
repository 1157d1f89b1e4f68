package mgmt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kiln.dev/kiln/internal/atomicfile"
)

// certSubjects are the names and addresses a new certificate is valid for.
type certSubjects struct {
	hostnames []string
	ips       []net.IP
}

// loadOrCreateCert returns the certificate kept in dir as cert.pem and
// key.pem. When either is missing it generates a self-signed ECDSA P-256 pair
// valid for subj and writes it (key 0600); created reports that. Files that do
// not form a valid pair are moved aside to <name>.broken and replaced.
func loadOrCreateCert(dir string, subj certSubjects, now time.Time) (cert tls.Certificate, created bool, err error) {
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_, cerr := os.Stat(certPath)
	_, kerr := os.Stat(keyPath)
	if cerr == nil && kerr == nil {
		cert, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err == nil {
			return cert, false, nil
		}
		for _, p := range []string{certPath, keyPath} {
			if rerr := os.Rename(p, p+".broken"); rerr != nil {
				return tls.Certificate{}, false, fmt.Errorf("moving aside unusable TLS files (%v): %w", err, rerr)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("creating TLS directory: %w", err)
	}
	certPEM, keyPEM, err := generateCert(subj, now)
	if err != nil {
		return tls.Certificate{}, false, err
	}
	// Key first: a cert.pem without its key is never left behind alone.
	if err := atomicfile.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, false, err
	}
	if err := atomicfile.WriteFile(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, false, err
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("loading generated certificate: %w", err)
	}
	return cert, true, nil
}

// generateCert makes a self-signed server certificate for subj valid from an
// hour before now for ten years.
func generateCert(subj certSubjects, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("generating serial number: %w", err)
	}
	cn := "kiln"
	if len(subj.hostnames) > 0 {
		cn = subj.hostnames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"kiln appliance (self-signed)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              subj.hostnames,
		IPAddresses:           subj.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding TLS key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// fingerprint is the SHA-256 of the leaf certificate as colon-separated hex,
// the form browsers and openssl show.
func fingerprint(cert tls.Certificate) string {
	if len(cert.Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(cert.Certificate[0])
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// localSubjects returns hostname(s), localhost and the machine's current
// addresses.
func localSubjects(configHostname string) certSubjects {
	var s certSubjects
	seen := map[string]bool{}
	for _, h := range []string{configHostname, osHostname(), "localhost"} {
		if h != "" && !seen[h] {
			seen[h] = true
			s.hostnames = append(s.hostnames, h)
		}
	}
	s.ips = []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
				ip := ipn.IP
				if v4 := ip.To4(); v4 != nil {
					ip = v4
				}
				s.ips = append(s.ips, ip)
			}
		}
	}
	return s
}

func osHostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}
