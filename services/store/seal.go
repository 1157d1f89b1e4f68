package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeyFileName is the file beside the database holding the key that seals
// the secrets kiln must be able to read back (vetting run tokens, which go
// into boot scripts, and held runs' SSH private keys). A copy of kiln.db
// alone — a backup, a support bundle — then reveals none of them.
const KeyFileName = "secrets.key"

// sealedPrefix starts every sealed value: "sealed1:" + base64(nonce ‖ AES-256-GCM ciphertext).
const sealedPrefix = "sealed1:"

// sealedColumns hold sealed values; Open seals what an older kiln stored in
// plaintext.
var sealedColumns = []string{"vet_runs.token", "vet_runs.ssh_private"}

// loadKey reads the sealing key beside the database at dbPath, creating it
// (0600) on first use. Processes starting at once agree on one key: it is
// written to a temporary file and linked into place, which fails if another
// process linked its key first.
func loadKey(dbPath string) (cipher.AEAD, error) {
	path := filepath.Join(filepath.Dir(dbPath), KeyFileName)
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		rand.Read(key)
		var f *os.File
		if f, err = os.CreateTemp(filepath.Dir(path), "."+KeyFileName+"-*"); err != nil {
			return nil, fmt.Errorf("creating %s: %w", path, err)
		}
		_, err = f.Write(key)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Link(f.Name(), path)
		}
		os.Remove(f.Name())
		if errors.Is(err, fs.ErrExist) {
			key, err = os.ReadFile(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading the sealing key %s: %w", path, err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("the sealing key %s has %d bytes, want 32: restore it from the backup taken with kiln.db (without it, run tokens and held runs' SSH keys cannot be read)", path, len(key))
	}
	if err := os.Chmod(path, FileMode); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts a secret for storage; "" stays "".
func (s *Store) seal(plain string) string {
	if plain == "" {
		return ""
	}
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(plain), nil))
}

// unseal reverses seal. A value without the prefix is a plaintext one an
// older kiln stored (Open seals those) and is returned as is.
func (s *Store) unseal(v string) (string, error) {
	b64, ok := strings.CutPrefix(v, sealedPrefix)
	if !ok {
		return v, nil
	}
	b, err := base64.RawStdEncoding.DecodeString(b64)
	n := s.aead.NonceSize()
	if err == nil && len(b) >= n {
		var plain []byte
		if plain, err = s.aead.Open(nil, b[:n], b[n:], nil); err == nil {
			return string(plain), nil
		}
	}
	return "", fmt.Errorf("a sealed secret does not open with %s (was the key file replaced? restore the one backed up with kiln.db)", KeyFileName)
}

// sealLegacy seals the plaintext secrets an older kiln stored.
func (s *Store) sealLegacy(ctx context.Context) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, tc := range sealedColumns {
			table, col, _ := strings.Cut(tc, ".")
			rows, err := tx.QueryContext(ctx, `SELECT rowid, `+col+` FROM `+table+` WHERE `+col+` <> '' AND `+col+` NOT LIKE ?`, sealedPrefix+"%")
			if err != nil {
				return fmt.Errorf("reading %s: %w", tc, err)
			}
			plain := map[int64]string{}
			for rows.Next() {
				var id int64
				var v string
				if err := rows.Scan(&id, &v); err != nil {
					rows.Close()
					return fmt.Errorf("reading %s: %w", tc, err)
				}
				plain[id] = v
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("reading %s: %w", tc, err)
			}
			for id, v := range plain {
				if _, err := tx.ExecContext(ctx, `UPDATE `+table+` SET `+col+` = ? WHERE rowid = ?`, s.seal(v), id); err != nil {
					return fmt.Errorf("sealing %s: %w", tc, err)
				}
			}
		}
		return nil
	})
}
