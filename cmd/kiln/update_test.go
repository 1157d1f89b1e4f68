package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/ota/bundle"
	"kiln.dev/kiln/ota/install"
	"kiln.dev/kiln/ota/slots"
	"kiln.dev/kiln/partitions"
	"kiln.dev/kiln/services/api"
	"kiln.dev/kiln/services/api/apiclient"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/mgmt/otahttp"
	"kiln.dev/kiln/services/store"
)

// recordingInstaller checks what a push delivers by reading it as the
// appliance would.
type recordingInstaller struct {
	keys []bundle.PublicKey
	// mu guards got.
	mu  sync.Mutex
	got *bundle.Manifest
}

func (r *recordingInstaller) Install(_ context.Context, body io.Reader, req install.Request) (install.Result, error) {
	br, err := bundle.NewReader(body, bundle.Options{Keys: r.keys, MinGeneration: 2})
	if err != nil {
		return install.Result{}, err
	}
	for {
		p, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return install.Result{}, err
		}
		if _, err := io.Copy(io.Discard, p); err != nil {
			return install.Result{}, err
		}
	}
	r.mu.Lock()
	r.got = &br.Manifest
	r.mu.Unlock()
	return install.Result{Slot: partitions.SlotB, Version: br.Manifest.Version, Generation: br.Manifest.Generation, Entry: "kiln-2+3-0.conf", Tries: 3}, nil
}

type stubSlots struct{}

func (stubSlots) Status(context.Context) (slots.Status, error) {
	return slots.Status{Running: "a", Slots: []slots.Slot{{Name: "a", State: slots.StateGood, Running: true, Generation: 1, Version: "1.0", Entry: "kiln-1.conf"}, {Name: "b", State: slots.StateInstalled, Generation: 2, Next: true}}}, nil
}

func (stubSlots) RollBack(context.Context, partitions.Slot) error { return nil }

// TestUpdateCLI makes a key, builds and verifies a bundle and pushes it
// through a real API server (authentication included) to an installer that
// verifies it like an appliance.
func TestUpdateCLI(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := runCmd(t, runKeys, "", "gen", "--out", dir, "--name", "test"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "test.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if _, _, err := runCmd(t, runKeys, "", "gen", "--out", dir, "--name", "test"); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("second keys gen = %v, want a refusal", err)
	}
	payloads := filepath.Join(dir, "payloads")
	os.MkdirAll(payloads, 0o755)
	for name, data := range map[string]string{"vmlinuz": "kernel", "initrd": "initrd", "root.squashfs": strings.Repeat("root", 5000)} {
		os.WriteFile(filepath.Join(payloads, name), []byte(data), 0o644)
	}
	out := filepath.Join(dir, "b.bundle")
	// The root payload needs its tree and root.verity, as kiln image build --payloads writes them.
	if _, _, err := runCmd(t, runUpdate, "", "build", "--payloads", payloads, "--key", filepath.Join(dir, "test.key"),
		"--version", "2.0", "--generation", "2", "--out", out); err == nil || !strings.Contains(err.Error(), "root.verity") {
		t.Errorf("update build without root.verity = %v, want an error naming it", err)
	}
	vp, err := verity.Append(filepath.Join(payloads, "root.squashfs"))
	if err != nil {
		t.Fatal(err)
	}
	wrong := vp
	wrong.RootHash = bytes.Repeat([]byte{7}, 32)
	os.WriteFile(filepath.Join(payloads, "root.verity"), []byte(wrong.String()+"\n"), 0o644)
	if _, _, err := runCmd(t, runUpdate, "", "build", "--payloads", payloads, "--key", filepath.Join(dir, "test.key"),
		"--version", "2.0", "--generation", "2", "--out", out); !errors.Is(err, verity.ErrMismatch) {
		t.Errorf("update build with a root.verity of another tree = %v, want ErrMismatch", err)
	}
	os.WriteFile(filepath.Join(payloads, "root.verity"), []byte(vp.String()+"\n"), 0o644)
	if _, errOut, err := runCmd(t, runUpdate, "", "build", "--payloads", payloads, "--key", filepath.Join(dir, "test.key"),
		"--version", "2.0", "--generation", "2", "--out", out); err != nil {
		t.Fatalf("update build: %v\n%s", err, errOut)
	}
	if o, _, err := runCmd(t, runUpdate, "", "verify", out, "--pub", filepath.Join(dir, "test.pub")); err != nil || !strings.Contains(o, "generation 2") {
		t.Fatalf("update verify = %v\n%s", err, o)
	}
	if _, _, err := runCmd(t, runUpdate, "", "build", "--payloads", payloads, "--version", "2.0", "--generation", "0"); !errors.Is(err, errUsage) ||
		!strings.Contains(err.Error(), "--key") || !strings.Contains(err.Error(), "--generation 0") {
		t.Errorf("update build without key and generation = %v, want a usage error naming both", err)
	}

	// An appliance's API with the update routes mounted.
	state := t.TempDir()
	db, err := store.Open(context.Background(), store.Path(state))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv, err := api.New(context.Background(), api.Options{Store: db, Supervisor: nil, Config: config.Default(), StateDir: state,
		BcryptCost: bcrypt.MinCost, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := bundle.ReadPublicKeyFile(filepath.Join(dir, "test.pub"))
	if err != nil {
		t.Fatal(err)
	}
	inst := &recordingInstaller{keys: []bundle.PublicKey{pub}}
	(&otahttp.Handler{Installer: inst, Slots: stubSlots{}}).Mount(srv)
	ts := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(func() { srv.Close(); ts.Close() })
	pw, err := api.ReadInitialPassword(state)
	if err != nil {
		t.Fatal(err)
	}
	creds := []string{"--credentials", filepath.Join(t.TempDir(), "credentials.json")}

	if _, _, err := runCmd(t, runUpdate, "", append([]string{"push", out, "--to", ts.URL}, creds...)...); !errors.Is(err, apiclient.ErrAuth) {
		t.Fatalf("push before login = %v, want apiclient.ErrAuth", err)
	}
	if _, errOut, err := runCmd(t, runLogin, pw+"\n", append(creds, "--url", ts.URL, "--password-stdin")...); err != nil {
		t.Fatalf("login: %v\n%s", err, errOut)
	}
	o, errOut, err := runCmd(t, runUpdate, "", append([]string{"push", out, "--to", ts.URL}, creds...)...)
	if err != nil {
		t.Fatalf("push: %v\n%s", err, errOut)
	}
	if !strings.Contains(o, "installed version 2.0 (generation 2) into slot b") || !strings.Contains(errOut, "(100%)") {
		t.Errorf("push printed %q / %q", o, errOut)
	}
	if inst.got == nil || inst.got.Generation != 2 {
		t.Errorf("the installer got %+v", inst.got)
	}
	o, _, err = runCmd(t, runUpdate, "", append([]string{"status", "--url", ts.URL}, creds...)...)
	if err != nil || !strings.Contains(o, "installed (boots next)") || !strings.Contains(o, "* a") {
		t.Errorf("status = %v\n%s", err, o)
	}
}
