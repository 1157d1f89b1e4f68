package store

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"

	"kiln.dev/kiln/services/internal/sealkey"
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
// (0600) on first use.
func loadKey(dbPath string) (cipher.AEAD, error) {
	return sealkey.Load(filepath.Join(filepath.Dir(dbPath), KeyFileName),
		"restore it from the backup taken with kiln.db (without it, run tokens and held runs' SSH keys cannot be read)")
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
