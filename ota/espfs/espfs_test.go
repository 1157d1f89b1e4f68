package espfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDir(t *testing.T) {
	d := Dir{Root: t.TempDir()}
	if err := d.MkdirAll("loader/entries"); err != nil {
		t.Fatal(err)
	}
	if _, err := ReplaceFile(d, "loader/entries/kiln-1.conf", strings.NewReader("one")); err != nil {
		t.Fatal(err)
	}
	if _, err := ReplaceFile(d, "loader/entries/kiln-1.conf", strings.NewReader("two")); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(d.Root, "loader/entries/sub"), 0o755)
	names, err := d.ReadDir("loader/entries")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"kiln-1.conf"}, names); diff != "" {
		t.Errorf("ReadDir (-want +got):\n%s", diff)
	}
	b, err := d.ReadFile("loader/entries/kiln-1.conf")
	if err != nil || string(b) != "two" {
		t.Errorf("ReadFile = %q, %v, want two", b, err)
	}
	if err := d.Remove("loader/entries/missing.conf"); err != nil {
		t.Errorf("Remove(missing) = %v, want nil", err)
	}
	if _, err := d.ReadDir("nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadDir(missing) = %v, want ErrNotExist", err)
	}
	for _, bad := range []string{"../etc/passwd", "loader/../../x", "a\\b", ""} {
		if _, err := d.ReadFile(bad); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile(%q) = %v, want a path error", bad, err)
		}
	}
}
