package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestAgeToolOpensBackups backs the format claim in doc.go: an operator
// without kiln opens a backup with Debian's age (a Makefile host package).
func TestAgeToolOpensBackups(t *testing.T) {
	ageBin, err := exec.LookPath("age")
	if err != nil {
		t.Skip("age is not installed (make deps installs it)")
	}
	file, _, err := GenerateKeyFile()
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseKeyFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPath, backupPath := filepath.Join(dir, "key"), filepath.Join(dir, "b.backup")
	writeFile(t, keyPath, string(file), 0o600)
	writeFile(t, backupPath, string(realBackup(t, key)), 0o600)
	plain, err := exec.Command(ageBin, "-d", "-i", keyPath, backupPath).Output()
	if err != nil {
		t.Fatalf("age -d: %v", err)
	}
	gz, err := gzip.NewReader(bytes.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if len(names) < 3 || names[0] != headerName || names[len(names)-1] != manifestName {
		t.Errorf("members after age -d = %v, want %s first and %s last", names, headerName, manifestName)
	}
}
