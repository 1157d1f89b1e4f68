package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/backup"
	"kiln.dev/kiln/services/backup/backuphttp"
	"kiln.dev/kiln/services/store"
)

// TestBackupRestoreCommands runs kiln backup and kiln restore as an
// operator would: back up a state dir with a passphrase file, restore it
// into a fresh one, and check that a wrong passphrase and a used state
// are refused.
func TestBackupRestoreCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o700)
	st, err := store.Open(ctx, store.Path(state))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateHost(ctx, store.Host{Name: "web1", MACs: []string{"52:54:00:aa:00:01"}, IPv4: netip.MustParseAddr("10.0.0.5")}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	cfg := filepath.Join(dir, "kiln.yaml")
	os.WriteFile(cfg, []byte("hostname: lab\n"), 0o600)
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("s3cret phrase\n"), 0o600)
	wrong := filepath.Join(dir, "wrong")
	os.WriteFile(wrong, []byte("other\n"), 0o600)
	out := filepath.Join(dir, "b.backup")
	noRun := filepath.Join(dir, "run") // no supervisor answers there

	var stdout, stderr bytes.Buffer
	s := stdio{strings.NewReader(""), &stdout, &stderr}
	if err := run(ctx, []string{"kiln", "backup", "--state", state, "--config", cfg, "--passphrase-file", pass, "-o", out}, s); err != nil {
		t.Fatalf("kiln backup: %v (%s)", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "1 hosts") {
		t.Errorf("kiln backup printed %q, want it to count 1 hosts", stdout.String())
	}
	if info, err := os.Stat(out); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v; want mode 0600", info, err)
	}

	fresh := filepath.Join(dir, "fresh", "state")
	freshCfg := filepath.Join(dir, "fresh", "config", "kiln.yaml")
	args := []string{"kiln", "restore", "--state", fresh, "--config", freshCfg, "--run", noRun}
	err = run(ctx, append(args, "--passphrase-file", wrong, out), s)
	if !errors.Is(err, backup.ErrWrongKey) {
		t.Fatalf("kiln restore with a wrong passphrase = %v, want ErrWrongKey", err)
	}
	if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused restore made %s", fresh)
	}
	stdout.Reset()
	if err := run(ctx, append(args, "--passphrase-file", pass, out), s); err != nil {
		t.Fatalf("kiln restore: %v", err)
	}
	if !strings.Contains(stdout.String(), "backup of lab") {
		t.Errorf("kiln restore printed %q", stdout.String())
	}
	rst, err := store.Open(ctx, store.Path(fresh))
	if err != nil {
		t.Fatal(err)
	}
	h, err := rst.HostByName(ctx, "web1")
	rst.Close()
	if err != nil || h.IPv4 != netip.MustParseAddr("10.0.0.5") {
		t.Errorf("restored host web1 = %+v, %v", h, err)
	}
	if b, _ := os.ReadFile(freshCfg); string(b) != "hostname: lab\n" {
		t.Errorf("restored config = %q", b)
	}
	err = run(ctx, append(args, "--passphrase-file", pass, out), s)
	if !errors.Is(err, backup.ErrInUse) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("kiln restore onto a used state = %v, want ErrInUse naming --force", err)
	}
	if err := run(ctx, append(args, "--force", "--passphrase-file", pass, out), s); err != nil {
		t.Errorf("kiln restore --force: %v", err)
	}
	if !strings.Contains(stdout.String(), "previous state is kept in "+fresh+".before-restore-") {
		t.Errorf("kiln restore --force printed %q, want where the old state went", stdout.String())
	}

	// A key file: keygen, back up to the public key, restore with the secret.
	keyFile := filepath.Join(dir, "backup.key")
	stdout.Reset()
	if err := run(ctx, []string{"kiln", "backup", "keygen", "-o", keyFile}, s); err != nil {
		t.Fatal(err)
	}
	pub := strings.TrimSpace(stdout.String()[strings.Index(stdout.String(), "public key: ")+len("public key: "):])
	pubFile := filepath.Join(dir, "backup.pub")
	os.WriteFile(pubFile, []byte(pub+"\n"), 0o644)
	out2 := filepath.Join(dir, "k.backup")
	if err := run(ctx, []string{"kiln", "backup", "--state", state, "--key", pubFile, "-o", out2}, s); err != nil {
		t.Fatalf("kiln backup --key PUBLIC: %v", err)
	}
	other := filepath.Join(dir, "other", "state")
	if err := run(ctx, []string{"kiln", "restore", "--state", other, "--config", "", "--run", noRun, "--key", keyFile, out2}, s); err != nil {
		t.Fatalf("kiln restore --key SECRET: %v", err)
	}
	if err := run(ctx, []string{"kiln", "backup", "keygen", "-o", keyFile}, s); err == nil {
		t.Error("kiln backup keygen over an existing key file succeeded; it must refuse")
	}
}

// TestBackupThroughTheAPI downloads a backup with kiln backup --url, for a
// public key from a key file, and restores it with the secret key.
func TestBackupThroughTheAPI(t *testing.T) {
	ctx := context.Background()
	a := newAppliance(t, func(srv *api.Server, db *store.Store, state string) {
		src := func(now time.Time) backup.Source {
			return backup.Source{StateDir: state, Store: db, Version: "test", Hostname: "lab2", Now: now}
		}
		(&backuphttp.Handler{Source: src, Dir: filepath.Join(state, backup.BackupDirName), Log: slog.New(slog.DiscardHandler)}).Mount(srv)
	})
	if _, err := a.db.CreateHost(ctx, store.Host{Name: "api1", MACs: []string{"52:54:00:00:02:01"}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials.json")
	cred := []string{"--credentials", creds}
	if _, errOut, err := runCmd(t, runLogin, a.password+"\n", append(cred, "--url", a.url, "--password-stdin")...); err != nil {
		t.Fatalf("login = %v\n%s", err, errOut)
	}
	keyFile := filepath.Join(dir, "backup.key")
	if _, _, err := runCmd(t, runBackup, "", "keygen", "-o", keyFile); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "api.backup")
	if stdout, _, err := runCmd(t, runBackup, "", append(cred, "--url", a.url, "--key", keyFile, "-o", out)...); err != nil || !strings.Contains(stdout, "wrote "+out) {
		t.Fatalf("kiln backup --url = %q, %v", stdout, err)
	}
	state := filepath.Join(dir, "restored")
	if _, _, err := runCmd(t, runRestore, "", "--state", state, "--config", "", "--run", dir, "--key", keyFile, out); err != nil {
		t.Fatalf("kiln restore of the download: %v", err)
	}
	rst, err := store.Open(ctx, store.Path(state))
	if err != nil {
		t.Fatal(err)
	}
	defer rst.Close()
	if _, err := rst.HostByName(ctx, "api1"); err != nil {
		t.Errorf("restored host api1: %v", err)
	}
}
