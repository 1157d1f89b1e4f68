package store

import (
	"context"
	"os"
	"syscall"
	"testing"
)

// TestDatabaseFilesArePrivate (issue 11, finding 11): kiln.db and its -wal
// and -shm files hold password hashes, run tokens and SSH keys; they are
// 0600 even under umask 0, and files an older kiln made 0644 are tightened
// at the next open.
func TestDatabaseFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path := Path(t.TempDir())
	check := func(when string) {
		t.Helper()
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			if m := fi.Mode().Perm(); m != FileMode {
				t.Errorf("%s: %s has mode %04o, want %04o", when, p, m, FileMode)
			}
		}
	}
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, Host{Name: "pc-01", MACs: []string{"52:54:00:00:00:01"}})
	check("after the first open")
	s.Close()
	// As a crash or an older kiln leaves them: readable by everyone (an
	// empty -wal and -shm are what SQLite leaves when it stops mid-way).
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path + "-wal", path + "-shm"} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, 0o644)
	}
	s, err = Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustCreate(t, s, Host{Name: "pc-02", MACs: []string{"52:54:00:00:00:02"}})
	check("after reopening files left 0644")
}
