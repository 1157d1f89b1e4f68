package iscsi

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestSealer(t *testing.T) {
	key := filepath.Join(t.TempDir(), "iscsi", KeyFile)
	// Several openers at once (mgmt, iscsi, httpboot start together) agree on one key.
	sealers := make([]*Sealer, 4)
	var wg sync.WaitGroup
	for i := range sealers {
		wg.Go(func() {
			s, err := OpenSealer(key)
			if err != nil {
				t.Error(err)
			}
			sealers[i] = s
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Errorf("key file = %v, %v; want 32 bytes, mode 0600", fi, err)
	}
	sealed := sealers[0].Seal("node1-secret", "node1/chap")
	if sealed == "node1-secret" || len(sealed) < 20 {
		t.Fatalf("Seal = %q", sealed)
	}
	for i, s := range sealers {
		if got, err := s.Open(sealed, "node1/chap"); err != nil || got != "node1-secret" {
			t.Errorf("sealer %d: Open = %q, %v", i, got, err)
		}
	}
	if again := sealers[0].Seal("node1-secret", "node1/chap"); again == sealed {
		t.Errorf("two seals of one secret are equal (nonce reused)")
	}
	other, err := OpenSealer(filepath.Join(t.TempDir(), KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		s       *Sealer
		sealed  string
		context string
	}{
		"another appliance's key": {other, sealed, "node1/chap"},
		"moved to another host":   {sealers[0], sealed, "node2/chap"},
		"tampered":                {sealers[0], sealed[:len(sealed)-4] + "AAA=", "node1/chap"},
		"not sealed":              {sealers[0], "node1-secret", "node1/chap"},
	} {
		if got, err := c.s.Open(c.sealed, c.context); !errors.Is(err, ErrUnseal) {
			t.Errorf("%s: Open = %q, %v; want ErrUnseal", name, got, err)
		}
	}
	if err := os.WriteFile(key, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSealer(key); err == nil {
		t.Errorf("OpenSealer with a 5-byte key succeeded")
	}
}

func TestNewSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s := NewSecret()
		if len(s) != 16 || seen[s] {
			t.Fatalf("NewSecret = %q (len %d, seen before %v)", s, len(s), seen[s])
		}
		seen[s] = true
	}
}
