package pid1

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestCopyFwCfg(t *testing.T) {
	sys := filepath.Join(t.TempDir(), "by_name", "opt", "kiln")
	out := filepath.Join(t.TempDir(), "fw_cfg")
	if names, err := CopyFwCfg(sys, out); err != nil || names != nil {
		t.Fatalf("CopyFwCfg(missing dir) = %v, %v, want nothing and no error", names, err)
	}
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// What the kernel shows for -fw_cfg name=opt/kiln/config,… and
	// name=opt/kiln/hosts.yaml,…, plus a deeper name that is not copied.
	write(filepath.Join(sys, "config", "raw"), "hostname: vm\n")
	write(filepath.Join(sys, "config", "size"), "13\n")
	write(filepath.Join(sys, "hosts.yaml", "raw"), "hosts: []\n")
	write(filepath.Join(sys, "deep", "er", "raw"), "x")
	names, err := CopyFwCfg(sys, out)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"config", "hosts.yaml"}) {
		t.Errorf("CopyFwCfg() = %q, want [config hosts.yaml]", names)
	}
	for name, want := range map[string]string{"config": "hostname: vm\n", "hosts.yaml": "hosts: []\n"} {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v, want %q", name, got, err, want)
		}
		if fi, err := os.Stat(filepath.Join(out, name)); err == nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", name, fi.Mode().Perm())
		}
	}
	// Copying again (PID 1 runs once, but tests may not) replaces the files.
	write(filepath.Join(sys, "config", "raw"), "hostname: vm2\n")
	if _, err := CopyFwCfg(sys, out); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "config")); string(got) != "hostname: vm2\n" {
		t.Errorf("config after a second copy = %q, want the new content", got)
	}
}

func TestLoadConfigFwCfgFirst(t *testing.T) {
	dir := t.TempDir()
	fw, persistent, builtin := filepath.Join(dir, "fw"), filepath.Join(dir, "data.yaml"), filepath.Join(dir, "etc.yaml")
	os.WriteFile(fw, []byte("hostname: from-qemu\n"), 0o600)
	os.WriteFile(persistent, []byte("hostname: site-a\n"), 0o644)
	os.WriteFile(builtin, []byte("hostname: builtin\n"), 0o644)
	c, from, err := LoadConfig(fw, persistent, builtin)
	if err != nil || from != fw || c.Hostname != "from-qemu" {
		t.Errorf("LoadConfig(fw, persistent, builtin) = %q from %q, %v; want the fw_cfg one", c.Hostname, from, err)
	}
	os.WriteFile(fw, []byte("hostname: -bad-\n"), 0o600)
	c, from, err = LoadConfig(fw, persistent, builtin)
	if err == nil || from != persistent || c.Hostname != "site-a" {
		t.Errorf("LoadConfig(bad fw, persistent, builtin) = %q from %q, %v; want the persistent one and an error", c.Hostname, from, err)
	}
}
