package release

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/ota/bundle"
)

// TestBuildVerify builds a bundle of small payloads, reads it back as an
// appliance would, and checks that a root whose tree another verity value
// describes is refused before anything is written.
func TestBuildVerify(t *testing.T) {
	dir := t.TempDir()
	files := bundle.Files{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"), Root: filepath.Join(dir, "root.squashfs")}
	os.WriteFile(files.Kernel, []byte("kernel"), 0o644)
	os.WriteFile(files.Initrd, []byte("initrd"), 0o644)
	os.WriteFile(files.Root, []byte(strings.Repeat("root", 5000)), 0o644)
	vp, err := verity.Append(files.Root)
	if err != nil {
		t.Fatal(err)
	}
	key, err := bundle.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "b.bundle")

	wrong := vp
	wrong.RootHash = bytes.Repeat([]byte{7}, 32)
	files.RootVerity = wrong.String()
	if _, err := Build(out, bundle.Compatible(), "2.0", 2, files, key); !errors.Is(err, verity.ErrMismatch) {
		t.Errorf("Build with another tree's verity value = %v, want ErrMismatch", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused Build left %s: %v", out, err)
	}

	files.RootVerity = vp.String()
	b, err := Build(out, bundle.Compatible(), "2.0", 2, files, key)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() != b.Size || len(b.SHA256) != 64 || b.Manifest.Generation != 2 {
		t.Errorf("Build = %+v; file %v", b, err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var seen []string
	br, err := Verify(f, bundle.Options{Keys: []bundle.PublicKey{{Key: key.Public().(ed25519.PublicKey)}}, Compatible: bundle.Compatible()},
		func(p *bundle.PayloadReader) { seen = append(seen, p.Name) })
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if br.Manifest.Version != "2.0" || br.KeyID != b.KeyID || len(seen) != 3 {
		t.Errorf("Verify = version %q key %q payloads %q; want 2.0, %s and three payloads", br.Manifest.Version, br.KeyID, seen, b.KeyID)
	}

	other, _ := bundle.GenerateKey(rand.Reader)
	f.Seek(0, 0)
	if _, err := Verify(f, bundle.Options{Keys: []bundle.PublicKey{{Key: other.Public().(ed25519.PublicKey)}}, Compatible: bundle.Compatible()},
		func(*bundle.PayloadReader) {}); err == nil {
		t.Error("Verify with another key succeeded, want a signature error")
	}
}
