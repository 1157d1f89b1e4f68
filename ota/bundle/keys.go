package bundle

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// PublicKey is a trusted signing key and where it came from.
type PublicKey struct {
	Key    ed25519.PublicKey
	Source string // file name, for messages
}

// ID returns the key's id: the first 8 bytes of the SHA-256 of the raw key, in hex.
func (k PublicKey) ID() string { return KeyID(k.Key) }

// KeyID returns a public key's id (16 hex digits).
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// GenerateKey makes a new signing key from rand (crypto/rand if nil).
func GenerateKey(r io.Reader) (ed25519.PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	_, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, fmt.Errorf("generating an ed25519 key: %w", err)
	}
	return priv, nil
}

// MarshalPrivateKey returns the key as a PKCS#8 PEM block.
func MarshalPrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encoding the private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKey returns the key as a PKIX PEM block.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding the public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePrivateKey reads a PEM PKCS#8 ed25519 private key.
func ParsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" block (make one with kiln keys gen)")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the private key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the private key is a %T, want ed25519", k)
	}
	return priv, nil
}

// ParsePublicKey reads a PEM PKIX ed25519 public key.
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM \"PUBLIC KEY\" block (kiln keys gen writes one next to the private key)")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("the public key is a %T, want ed25519", k)
	}
	return pub, nil
}

// ReadPrivateKeyFile reads a private key file, refusing one that others can read.
func ReadPrivateKeyFile(path string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s has mode %#o: others can read it; chmod 600 it (and treat it as leaked if it was shared)", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	priv, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return priv, nil
}

// ReadPublicKeyFile reads one public key file.
func ReadPublicKeyFile(path string) (PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return PublicKey{}, fmt.Errorf("public key: %w", err)
	}
	pub, err := ParsePublicKey(b)
	if err != nil {
		return PublicKey{}, fmt.Errorf("public key %s: %w", path, err)
	}
	return PublicKey{Key: pub, Source: path}, nil
}

// ReadKeyDir reads every *.pub file of dir (sorted by name): the keys an
// appliance trusts (/etc/kiln/ota-keys). More than one allows rotating keys.
// An unreadable file is an error; an empty or missing dir yields ErrNoKeys.
func ReadKeyDir(dir string) ([]PublicKey, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.pub"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var keys []PublicKey
	for _, n := range names {
		k, err := ReadPublicKeyFile(n)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no *.pub keys: %w", dir, ErrNoKeys)
	}
	return keys, nil
}

// sigPrefix starts manifest.sig: "ed25519 <key id> <base64 signature>\n".
const sigPrefix = "ed25519 "

// Sign returns the manifest.sig contents for manifest bytes.
func Sign(manifest []byte, priv ed25519.PrivateKey) []byte {
	sig := ed25519.Sign(priv, manifest)
	pub := priv.Public().(ed25519.PublicKey)
	return []byte(sigPrefix + KeyID(pub) + " " + base64.StdEncoding.EncodeToString(sig) + "\n")
}

// Verify checks manifest.sig against manifest bytes and the trusted keys and
// returns the id of the key that signed it.
func Verify(manifest, sigFile []byte, keys []PublicKey) (string, error) {
	f := strings.Fields(string(sigFile))
	if len(f) != 3 || f[0] != strings.TrimSpace(sigPrefix) || string(sigFile) != strings.Join(f, " ")+"\n" {
		return "", fmt.Errorf("%w: manifest.sig is not \"ed25519 <key id> <base64 signature>\"", ErrFormat)
	}
	id := f[1]
	sig, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return "", fmt.Errorf("%w: manifest.sig: the signature is not %d bytes of base64", ErrFormat, ed25519.SignatureSize)
	}
	var ids []string
	for _, k := range keys {
		if k.ID() != id {
			ids = append(ids, k.ID())
			continue
		}
		if !ed25519.Verify(k.Key, manifest, sig) {
			return "", fmt.Errorf("%w: the manifest signature by key %s does not verify (the bundle was altered after signing)", ErrSignature, id)
		}
		return id, nil
	}
	return "", fmt.Errorf("%w: signed with key %s; this appliance trusts %s (add the key's .pub to the image's /etc/kiln/ota-keys, or sign with a trusted key)",
		ErrUnknownKey, id, orNone(ids))
}

func orNone(ids []string) string {
	if len(ids) == 0 {
		return "no keys"
	}
	return strings.Join(ids, ", ")
}
