package system

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiln.dev/kiln/ota/bootentry"
	"kiln.dev/kiln/ota/bundle"
	"kiln.dev/kiln/ota/slots"
	"kiln.dev/kiln/partitions"
)

func TestDetect(t *testing.T) {
	dir := t.TempDir()
	cmdline := filepath.Join(dir, "cmdline")
	esp := filepath.Join(dir, "esp")
	keys := filepath.Join(dir, "keys")
	p := Paths{Cmdline: cmdline, ESP: esp, Keys: keys, StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run")}

	os.WriteFile(cmdline, []byte("console=ttyS0\n"), 0o644)
	if _, err := Detect(p); !errors.Is(err, ErrNotAppliance) {
		t.Fatalf("Detect without kiln.slot = %v, want ErrNotAppliance", err)
	}

	os.WriteFile(cmdline, []byte("root=PARTUUID=aaaaaaaa-0000-5000-8000-000000000001 kiln.slot=b ro\n"), 0o644)
	s, err := Detect(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Slot != partitions.SlotB || s.RootUUID != "aaaaaaaa-0000-5000-8000-000000000001" || s.ESP != nil || !errors.Is(s.KeysErr, bundle.ErrNoKeys) {
		t.Errorf("Detect = %+v", s)
	}
	if s.LockPath != filepath.Join(dir, "run", "ota.lock") || s.State.Path != slots.DefaultPath(p.StateDir) {
		t.Errorf("paths: lock %s state %s", s.LockPath, s.State.Path)
	}
	if _, err := s.RunningGeneration(); err == nil || !strings.Contains(err.Error(), "ESP") {
		t.Errorf("RunningGeneration without an ESP = %v", err)
	}

	// With the ESP and a key.
	os.MkdirAll(filepath.Join(esp, bootentry.Dir), 0o755)
	e := bootentry.Entry{Generation: 5, Slot: partitions.SlotB, Version: "5.0", RootUUID: "AAAAAAAA-0000-5000-8000-000000000001"}
	os.WriteFile(filepath.Join(esp, bootentry.Dir, e.FileName()), bootentry.Render(e), 0o644)
	os.MkdirAll(keys, 0o755)
	pub, _, _ := ed25519.GenerateKey(nil)
	pem, _ := bundle.MarshalPublicKey(pub)
	os.WriteFile(filepath.Join(keys, "release.pub"), pem, 0o644)
	if s, err = Detect(p); err != nil || s.ESP == nil || len(s.Keys) != 1 {
		t.Fatalf("Detect = %+v, %v", s, err)
	}
	if gen, err := s.RunningGeneration(); err != nil || gen != 5 {
		t.Errorf("RunningGeneration = %d, %v; want 5", gen, err)
	}
	if c := s.Controller(nil); c.ESP == nil || c.Running != partitions.SlotB {
		t.Errorf("Controller = %+v", c)
	}
	if in := s.Installer(2, nil); in.ESP == nil || in.Tries != 2 || in.Target == nil {
		t.Errorf("Installer = %+v", in)
	}
	if id := Identity(); id == "" {
		t.Error("Identity is empty")
	}
}
