package store

import (
	"context"
	"fmt"
	"strings"
)

// Secret is one secret value the database holds and where it sits.
type Secret struct {
	Column string // "table.column"
	Value  string
}

// secretColumns are the columns holding secrets or their hashes: nothing of
// them may appear in an event, a log, an export or an API view (except the
// admin-only routes made to hand one out, e.g. a held run's SSH key).
// TestSecretColumnsAreListed keeps this list complete.
var secretColumns = []string{
	"hosts.token",
	"vet_runs.token", "vet_runs.token_hash", "vet_runs.ssh_private",
	"users.password_hash",
	"sessions.id_hash", "sessions.csrf",
	"api_tokens.secret_hash",
	// Sealed by package iscsi with its own key: Secrets lists them as stored.
	"iscsi_initiators.chap_sealed", "iscsi_initiators.mutual_sealed",
}

// Secrets returns every non-empty secret value the database holds (sealed
// ones both as stored and opened), for audits proving that no view leaks one.
func (s *Store) Secrets(ctx context.Context) ([]Secret, error) {
	var out []Secret
	for _, tc := range secretColumns {
		table, col, _ := strings.Cut(tc, ".")
		rows, err := s.db.QueryContext(ctx, `SELECT `+col+` FROM `+table+` WHERE `+col+` <> ''`)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", tc, err)
		}
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return nil, fmt.Errorf("reading %s: %w", tc, err)
			}
			out = append(out, Secret{Column: tc, Value: v})
			if plain, err := s.unseal(v); err == nil && plain != v {
				// Sealed at rest: the plaintext is what a leak would show.
				out = append(out, Secret{Column: tc, Value: plain})
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", tc, err)
		}
	}
	return out, nil
}

// Redacted replaces the value of every "token=" parameter in s (a boot URL's
// query, kiln.token= on a kernel command line) with "redacted", so text that
// quotes a URL or command line can be stored and shown.
func Redacted(s string) string {
	const key = "token="
	var b strings.Builder
	for {
		i := strings.Index(s, key)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+len(key)])
		s = s[i+len(key):]
		end := strings.IndexAny(s, " \t&;#")
		if end < 0 {
			end = len(s)
		}
		if end > 0 {
			b.WriteString("redacted")
		}
		s = s[end:]
	}
}
