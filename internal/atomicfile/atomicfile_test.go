package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// names lists dir's entries.
func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range es {
		n = append(n, e.Name())
	}
	return n
}

func TestWriteFileReplaces(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for _, tc := range []struct {
		data string
		mode fs.FileMode
		want fs.FileMode
	}{
		{"first\n", 0o644, 0o644},
		{"second, longer than the first\n", 0o644, 0o644},
		{"s", 0o600, 0o600},
		{"umask", 0o666, 0o644},
	} {
		if err := WriteFile(p, []byte(tc.data), tc.mode); err != nil {
			t.Fatalf("WriteFile(%q, %o) = %v", tc.data, tc.mode, err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != tc.data {
			t.Errorf("after WriteFile(%q): file holds %q, %v", tc.data, b, err)
		}
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != tc.want {
			t.Errorf("WriteFile(%q, %o): mode %v, %v; want %o", tc.data, tc.mode, st.Mode().Perm(), err, tc.want)
		}
		if n := names(t, dir); len(n) != 1 {
			t.Errorf("after WriteFile(%q) the directory holds %q, want only state.json", tc.data, n)
		}
	}
}

func TestWriteKeepsOldOnFailure(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "hosts.csv")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := Write(p, 0o644, func(f *os.File) error {
		f.Write([]byte("half of the new"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("Write with a failing fill = %v, want it to wrap boom", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("after a failed Write the file holds %q, want %q", b, "old")
	}
	if n := names(t, dir); len(n) != 1 {
		t.Errorf("after a failed Write the directory holds %q, want only hosts.csv", n)
	}
}

func TestWriteGivesAFileThatSeeks(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk.img")
	err := Write(p, 0o644, func(f *os.File) error {
		if _, err := f.WriteAt([]byte("end"), 5); err != nil {
			return err
		}
		_, err := f.WriteAt([]byte("start"), 0)
		return err
	})
	if b, _ := os.ReadFile(p); err != nil || string(b) != "startend" {
		t.Errorf("Write with WriteAt = %v, file %q; want nil, %q", err, b, "startend")
	}
}

func TestWriteIntoMissingDirectory(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing", "f")
	if err := WriteFile(p, []byte("x"), 0o644); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFile into a missing directory = %v, want fs.ErrNotExist", err)
	}
}

func TestSyncDirMissing(t *testing.T) {
	if err := SyncDir(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SyncDir(missing) = %v, want fs.ErrNotExist", err)
	}
}
