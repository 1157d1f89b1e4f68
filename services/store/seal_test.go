package store

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunSecretsSealedAtRest (issue 11, finding 11): a vetting run's token
// and SSH private key are not in kiln.db in plaintext (only sealed with the
// key in secrets.key beside it); the store hands them back as they were, a
// plaintext row an older kiln stored is sealed at the next open, and a
// replaced key file is a clear error, not garbage.
func TestRunSecretsSealedAtRest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := Path(dir)
	const token, key = "run-token-0123456789abcdef", "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-key-material\n-----END OPENSSH PRIVATE KEY-----\n"
	s := open(t, path)
	h := mustCreate(t, s, Host{Name: "pc-01", MACs: []string{"52:54:00:00:00:01"}})
	r, err := s.CreateVetRun(ctx, VetRun{HostID: h.ID, Host: h.Name, State: "queued", Profile: "quick", Token: token, TokenHash: "hash-of-token", SSHPrivate: key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateVetRun(ctx, r.ID, func(v *VetRun, _ *VetUpdate) error { v.State = "running"; return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := s.VetRunByTokenHash(ctx, "hash-of-token")
	if err != nil || got.Token != token || got.SSHPrivate != key {
		t.Fatalf("VetRunByTokenHash = %q %q, %v; want the token and key back", got.Token, got.SSHPrivate, err)
	}
	s.Close()
	for _, f := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(token)) || bytes.Contains(b, []byte("secret-key-material")) {
			t.Errorf("%s holds the run token or SSH key in plaintext", f)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFileName)); err != nil || fi.Mode().Perm() != FileMode {
		t.Errorf("stat %s = %v, %v; want mode %04o", KeyFileName, fi, err, FileMode)
	}

	// A row as an older kiln stored it: sealed at the next open.
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`UPDATE vet_runs SET token = ?, ssh_private = ? WHERE id = ?`, token, key, r.ID); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	s = open(t, path)
	var stored string
	if err := s.db.QueryRow(`SELECT token || ssh_private FROM vet_runs WHERE id = ?`, r.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stored, token) || strings.Contains(stored, "secret-key-material") || !strings.HasPrefix(stored, sealedPrefix) {
		t.Errorf("after reopening, the plaintext row holds %q, want it sealed", stored)
	}
	if got, err := s.VetRunByID(ctx, r.ID); err != nil || got.Token != token || got.SSHPrivate != key {
		t.Errorf("VetRunByID after sealing = %q %q, %v", got.Token, got.SSHPrivate, err)
	}
	secrets, err := s.Secrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var plain bool
	for _, sc := range secrets {
		plain = plain || sc.Value == token
	}
	if !plain {
		t.Errorf("Secrets() lacks the opened run token, so leak audits would miss it")
	}
	s.Close()

	// Another key: reading the run fails and says what to do.
	if err := os.WriteFile(filepath.Join(dir, KeyFileName), bytes.Repeat([]byte{7}, 32), FileMode); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	if _, err := s.VetRunByID(ctx, r.ID); err == nil || !strings.Contains(err.Error(), KeyFileName) {
		t.Errorf("VetRunByID with a replaced key = %v, want an error naming %s", err, KeyFileName)
	}
}

// TestConcurrentFirstOpensShareOneKey: the appliance's services open the
// store at once on first boot; they must all end up with the same key.
func TestConcurrentFirstOpensShareOneKey(t *testing.T) {
	ctx := context.Background()
	path := Path(t.TempDir())
	const n = 8
	stores := make([]*Store, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			var err error
			stores[i], err = Open(ctx, path)
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("Open = %v", err)
		}
	}
	defer func() {
		for _, s := range stores {
			s.Close()
		}
	}()
	sealed := stores[0].seal("a secret")
	for i, s := range stores {
		if got, err := s.unseal(sealed); err != nil || got != "a secret" {
			t.Errorf("store %d opens store 0's sealed value as %q, %v: the opens made different keys", i, got, err)
		}
	}
}
