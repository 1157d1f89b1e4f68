package oplock

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestAcquire(t *testing.T) {
	p := filepath.Join(t.TempDir(), "run", "ota.lock")
	l, err := Acquire(p, "install of 2.0")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(p, "rollback")
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "install of 2.0") {
		t.Fatalf("second Acquire = %v, want ErrBusy naming the install", err)
	}
	l.Release()
	l2, err := Acquire(p, "rollback")
	if err != nil {
		t.Fatalf("Acquire after Release = %v", err)
	}
	l2.Release()
	l2.Release() // twice is harmless
}
