package kmod

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestModprobeDryRun(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(testDep), 0o644)
	os.WriteFile(filepath.Join(dir, "modules.alias"), []byte(testAlias), 0o644)
	var out, errOut bytes.Buffer
	if err := Modprobe([]string{"-n", "--", "fs-vfat", "x=1"}, dir, &out, &errOut); err != nil {
		t.Fatalf("Modprobe(-n fs-vfat): %v (%s)", err, errOut.String())
	}
	want := "insmod " + filepath.Join(dir, "kernel/fs/fat/fat.ko") + " \ninsmod " + filepath.Join(dir, "kernel/fs/fat/vfat.ko") + " x=1\n"
	if out.String() != want {
		t.Errorf("Modprobe(-n fs-vfat) printed %q, want %q", out.String(), want)
	}
	// The kernel's request for a module kiln does not ship: not found, no message.
	err := Modprobe([]string{"-q", "--", "nls_ascii"}, dir, &out, &errOut)
	if !errors.Is(err, ErrNotFound) || err.Error() != ErrNotFound.Error() {
		t.Errorf("Modprobe(-q nls_ascii) = %v, want bare ErrNotFound", err)
	}
	if err := Modprobe([]string{"nls_ascii"}, dir, &out, &errOut); err == nil || !strings.Contains(err.Error(), "nls_ascii") {
		t.Errorf("Modprobe(nls_ascii) = %v, want an error naming the module", err)
	}
	if err := Modprobe(nil, dir, &out, &errOut); !errors.Is(err, ErrUsage) {
		t.Errorf("Modprobe() = %v, want ErrUsage", err)
	}
}
