package iscsi

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"kiln.dev/kiln/services/internal/sealkey"
)

// Why sealed and not hashed: CHAP (RFC 1994, RFC 3720 §11.1.4) proves a
// secret by hashing it with a fresh challenge, so the target must hold the
// secret itself: LIO takes it in clear text in configfs, mutual CHAP makes
// the target compute responses from the second secret, and the host's own
// iPXE script must hand it over. A one-way hash would leave nothing to
// compute with. So secrets are sealed (AES-256-GCM) with a key kept in a
// file on the data partition, beside but outside the database: a copy of
// kiln.db alone (a backup, an export, the snapshot kept for rollback)
// reveals no secret.

// sealPrefix versions the sealed format: "v1:" base64(nonce ‖ ciphertext).
const sealPrefix = "v1:"

// ErrUnseal: a sealed value does not open with this key (another
// appliance's key, a tampered value, or one moved to another record).
var ErrUnseal = errors.New("sealed CHAP secret does not open with this appliance's key")

// Sealer seals and opens CHAP secrets.
type Sealer struct{ aead cipher.AEAD }

// KeyFile is the sealing key's file below the iscsi state directory.
const KeyFile = "chap.key"

// OpenSealer loads the key at path, creating it (32 random bytes, mode
// 0600) the first time. Concurrent first calls from several processes
// agree on one key: it is written to a temporary file and linked into
// place, which never replaces a key another process linked first.
func OpenSealer(path string) (*Sealer, error) {
	aead, err := sealkey.Load(path, "restore it from a backup of the data partition; without it every CHAP secret must be regenerated")
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts secret bound to context (e.g. "<host>/chap"): it opens
// only with the same context, so a sealed value copied to another host's
// record is refused.
func (s *Sealer) Seal(secret, context string) string {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return sealPrefix + base64.StdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(secret), []byte(context)))
}

// Open decrypts a value Seal made with the same context.
func (s *Sealer) Open(sealed, context string) (string, error) {
	b64, ok := strings.CutPrefix(sealed, sealPrefix)
	if !ok {
		return "", fmt.Errorf("%w: unknown format", ErrUnseal)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) < s.aead.NonceSize() {
		return "", fmt.Errorf("%w: malformed", ErrUnseal)
	}
	n := s.aead.NonceSize()
	out, err := s.aead.Open(nil, b[:n], b[n:], []byte(context))
	if err != nil {
		return "", ErrUnseal
	}
	return string(out), nil
}

// NewSecret returns a random CHAP secret: 16 characters (~93 bits) from an
// alphabet without look-alikes. 16 is the most Microsoft's initiator
// accepts (12-16); open-iscsi and iPXE take it too.
func NewSecret() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	const limit = 256 / len(alphabet) * len(alphabet) // rejection sampling: no modulo bias
	out := make([]byte, 0, 16)
	b := make([]byte, 32)
	for len(out) < cap(out) {
		rand.Read(b)
		for _, c := range b {
			if int(c) < limit && len(out) < cap(out) {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(out)
}
