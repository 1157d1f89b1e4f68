package datapart

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestMakeDirsArePrivate (issue 11, finding 11): state and config are 0700
// and log 0750 even under umask 0, and directories an older kiln made 0755
// are tightened.
func TestMakeDirsArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	want := map[string]os.FileMode{"state": 0o700, "config": 0o700, "log": 0o750}
	for _, name := range []string{"fresh", "left open"} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			if name == "left open" {
				for d := range want {
					if err := os.Mkdir(filepath.Join(root, d), 0o777); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := MakeDirs(root); err != nil {
				t.Fatalf("MakeDirs(%s) = %v", root, err)
			}
			for d, m := range want {
				fi, err := os.Stat(filepath.Join(root, d))
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != m {
					t.Errorf("MakeDirs: %s has mode %04o, want %04o", d, got, m)
				}
			}
		})
	}
}
