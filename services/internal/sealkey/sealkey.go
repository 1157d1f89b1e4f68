// Package sealkey loads, or makes on first use, the 32-byte AES-256-GCM key
// that kiln seals stored secrets with (run tokens and SSH keys in the store,
// CHAP secrets in the iSCSI service), and gives other purposes (the boot
// nonces' MAC key) keys derived from it.
package sealkey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// FileMode is the key file's mode, whatever the umask.
const FileMode fs.FileMode = 0o600

// Load reads the key at path, creating it (and its directory, 0700) the
// first time. Concurrent first calls from several processes agree on one
// key: it is written to a temporary file and linked into place, which never
// replaces a key another process linked first. restore is what the operator
// should do when the file is damaged; it ends the error.
func Load(path, restore string) (cipher.AEAD, error) {
	key, err := read(path, restore)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// read returns the raw key at path, creating it the first time.
func read(path, restore string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = create(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the sealing key %s: %w", path, err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("the sealing key %s has %d bytes, want 32: %s", path, len(key), restore)
	}
	if err := os.Chmod(path, FileMode); err != nil {
		return nil, err
	}
	return key, nil
}

// Derived returns a 32-byte key for purpose, derived from the key at path
// (read or created as Load does) with HKDF-SHA256 and purpose as its info:
// it reveals nothing of the sealing key nor of another purpose's key, and
// needs no file of its own (processes sharing the state directory agree on
// it, and the data partition's backup already holds it).
func Derived(path, restore, purpose string) ([]byte, error) {
	key, err := read(path, restore)
	if err != nil {
		return nil, err
	}
	k, err := hkdf.Key(sha256.New, key, nil, purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("deriving the %s key: %w", purpose, err)
	}
	return k, nil
}

func create(path string) ([]byte, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	rand.Read(key)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(key)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp.Name(), path)
	}
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return os.ReadFile(path)
}
