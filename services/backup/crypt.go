package backup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
)

// Sentinel errors callers branch on.
var (
	// ErrWrongKey: the passphrase or key file does not open this backup.
	ErrWrongKey = errors.New("wrong passphrase or key file")
	// ErrDamaged: the file is truncated or was changed after it was written.
	ErrDamaged = errors.New("the backup is damaged (truncated or changed)")
	// ErrNotBackup: the file is not a kiln backup at all.
	ErrNotBackup = errors.New("not a kiln backup")
)

// Key encrypts and decrypts backups: a passphrase or an X25519 key file.
type Key struct {
	recipients []age.Recipient
	identities []age.Identity
}

// DefaultWorkFactor is scrypt's log2(N) for passphrases (age's default, about
// a second on one core); the work factor is stored in the file.
const DefaultWorkFactor = 18

// Passphrase returns a key derived from pass with scrypt at logN
// (DefaultWorkFactor when 0).
func Passphrase(pass string, logN int) (Key, error) {
	if pass == "" {
		return Key{}, errors.New("the backup passphrase is empty: give one with --passphrase-file or on the terminal")
	}
	r, err := age.NewScryptRecipient(pass)
	if err != nil {
		return Key{}, err
	}
	if logN == 0 {
		logN = DefaultWorkFactor
	}
	r.SetWorkFactor(logN)
	id, err := age.NewScryptIdentity(pass)
	if err != nil {
		return Key{}, err
	}
	return Key{recipients: []age.Recipient{r}, identities: []age.Identity{id}}, nil
}

// ParseKeyFile reads a key file: secret keys (AGE-SECRET-KEY-1…, which
// encrypt and decrypt) or public keys (age1…, which only encrypt — fit for
// scheduled backups an appliance must not be able to read back). Lines
// starting with # are comments.
func ParseKeyFile(b []byte) (Key, error) {
	var k Key
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "AGE-SECRET-KEY-1"):
			id, err := age.ParseX25519Identity(line)
			if err != nil {
				return Key{}, fmt.Errorf("key file line %d: %v", n, err)
			}
			k.identities = append(k.identities, id)
			k.recipients = append(k.recipients, id.Recipient())
		case strings.HasPrefix(line, "age1"):
			r, err := age.ParseX25519Recipient(line)
			if err != nil {
				return Key{}, fmt.Errorf("key file line %d: %v", n, err)
			}
			k.recipients = append(k.recipients, r)
		default:
			return Key{}, fmt.Errorf("key file line %d: want an AGE-SECRET-KEY-1… or age1… key (make one with kiln backup keygen)", n)
		}
	}
	if len(k.recipients) == 0 {
		return Key{}, errors.New("the key file holds no key (make one with kiln backup keygen)")
	}
	return k, nil
}

// LoadKeyFile reads ParseKeyFile's format from path.
func LoadKeyFile(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("reading the key file: %w", err)
	}
	k, err := ParseKeyFile(b)
	if err != nil {
		return Key{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// GenerateKeyFile returns a new key file's contents: a comment with the
// public key (for scheduled backups) and the secret key.
func GenerateKeyFile() ([]byte, string, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, "", err
	}
	pub := id.Recipient().String()
	return []byte("# kiln backup key; public key: " + pub + "\n" + id.String() + "\n"), pub, nil
}

// PublicKeys returns k's X25519 public keys (age1…), one per key.
func (k Key) PublicKeys() []string {
	var out []string
	for _, r := range k.recipients {
		if x, ok := r.(*age.X25519Recipient); ok {
			out = append(out, x.String())
		}
	}
	return out
}

// CanDecrypt reports whether k holds a secret (a passphrase or secret key).
func (k Key) CanDecrypt() bool { return len(k.identities) > 0 }

// encrypt returns a writer whose bytes reach dst encrypted; Close writes
// the final chunk (without it the file reads as truncated).
func (k Key) encrypt(dst io.Writer) (io.WriteCloser, error) {
	if len(k.recipients) == 0 {
		return nil, errors.New("no backup key given")
	}
	return age.Encrypt(dst, k.recipients...)
}

// decrypt returns the plaintext of src. Errors while reading it are
// ErrDamaged; a key that does not fit is ErrWrongKey.
func (k Key) decrypt(src io.Reader) (io.Reader, error) {
	if !k.CanDecrypt() {
		return nil, fmt.Errorf("%w: a public key (age1…) only encrypts; restore needs the key file with the secret key (AGE-SECRET-KEY-1…)", ErrWrongKey)
	}
	br := bufio.NewReader(src)
	if head, err := br.Peek(len(ageMagic)); err != nil || string(head) != ageMagic {
		if armored, _ := br.Peek(len(armorMagic)); string(armored) == armorMagic {
			return nil, fmt.Errorf("%w: it is ASCII-armored; kiln writes binary backups (age -d can read this one)", ErrNotBackup)
		}
		return nil, fmt.Errorf("%w: it does not start with an age header (%q)", ErrNotBackup, ageMagic)
	}
	r, err := age.Decrypt(br, k.identities...)
	var noMatch *age.NoIdentityMatchError
	switch {
	case errors.As(err, &noMatch):
		return nil, fmt.Errorf("%w: it is encrypted for another passphrase or key (%v)", ErrWrongKey, err)
	case err != nil && strings.Contains(err.Error(), "bad header MAC"):
		return nil, fmt.Errorf("%w: its header does not match its authentication code", ErrDamaged)
	case err != nil:
		return nil, fmt.Errorf("%w: reading its header: %v", ErrDamaged, err)
	}
	return damagedReader{r}, nil
}

const (
	ageMagic   = "age-encryption.org/v1\n"
	armorMagic = "-----BEGIN AGE ENCRYPTED FILE-----"
)

// damagedReader turns errors of the decrypting reader into ErrDamaged.
type damagedReader struct{ r io.Reader }

func (d damagedReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	return n, err
}
