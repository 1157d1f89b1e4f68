package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, f func(context.Context, []string, stdio) error, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := f(context.Background(), args, stdio{in: strings.NewReader(stdin), out: &out, err: &errb})
	return out.String(), errb.String(), err
}

func TestHostsImportExport(t *testing.T) {
	state := t.TempDir()
	dir := t.TempDir()
	csvIn := filepath.Join(dir, "hall.csv")
	if err := os.WriteFile(csvIn, []byte("name,macs,ipv4,boot_profile\npc-01,52:54:00:00:01:01,10.0.0.11,vet\npc-02,52:54:00:00:02:01,,\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, runHosts, "", "import", "--state", state, csvIn)
	if err != nil || !strings.Contains(out, "2 created, 0 updated") {
		t.Fatalf("hosts import = %q, %v, want 2 created", out, err)
	}
	// Exporting to YAML and importing that elsewhere gives the same hosts.
	yamlOut := filepath.Join(dir, "hall.yaml")
	if _, _, err := runCmd(t, runHosts, "", "export", "--state", state, yamlOut); err != nil {
		t.Fatalf("hosts export = %v", err)
	}
	b, _ := os.ReadFile(yamlOut)
	if !strings.Contains(string(b), "name: pc-01") || !strings.Contains(string(b), "ipv4: 10.0.0.11") {
		t.Errorf("export wrote:\n%s", b)
	}
	other := t.TempDir()
	if _, _, err := runCmd(t, runHosts, string(b), "import", "--state", other, "-"); err != nil {
		t.Fatalf("hosts import - (yaml from stdin) = %v", err)
	}
	csvOut, _, err := runCmd(t, runHosts, "", "export", "--state", other, "--format", "csv")
	if err != nil || !strings.Contains(csvOut, "pc-02,52:54:00:00:02:01,,local") {
		t.Errorf("hosts export --format csv = %q, %v", csvOut, err)
	}
	// A bad file changes nothing and says where.
	_, _, err = runCmd(t, runHosts, "name,macs\npc-03,52:54:00:00:03:01\npc-04,52:54:00:00:01:01\n", "import", "--state", state, "--format", "csv", "-")
	if err == nil || !strings.Contains(err.Error(), "line 3: host pc-04: macs[0]: 52:54:00:00:01:01 already belongs to host pc-01") ||
		!strings.Contains(err.Error(), "nothing was imported") {
		t.Errorf("hosts import (conflict) = %v, want line 3 conflict and nothing imported", err)
	}
	if _, _, err := runCmd(t, runHosts, "", "import", "--state", state, filepath.Join(dir, "hall.txt")); err == nil || !strings.Contains(err.Error(), ".csv") {
		t.Errorf("hosts import hall.txt = %v, want unknown-format error", err)
	}
	if _, _, err := runCmd(t, runHosts, ""); !errors.Is(err, errUsage) {
		t.Errorf("hosts (no verb) = %v, want errUsage", err)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("hostname: kiln\n"), 0o644)
	os.WriteFile(bad, []byte("provisioning:\n  subnets:\n    - {name: a, interface: eth1, cidr: 10.0.0.0/24, mode: authoritative, pool: {start: 10.0.0.9, end: 10.0.1.9}}\n"), 0o644)
	if out, _, err := runCmd(t, runConfig, "", "validate", "--config", good); err != nil || out != good+": ok\n" {
		t.Errorf("config validate good = %q, %v", out, err)
	}
	_, _, err := runCmd(t, runConfig, "", "validate", "--config", bad)
	if err == nil || !strings.Contains(err.Error(), "provisioning.subnets[0].pool.end: 10.0.1.9 is outside cidr 10.0.0.0/24") {
		t.Errorf("config validate bad = %v, want the pool.end error", err)
	}
	if _, _, err := runCmd(t, runConfig, "hostname: -x\n", "validate", "--config", "-"); err == nil || !strings.Contains(err.Error(), "hostname") {
		t.Errorf("config validate - = %v, want hostname error", err)
	}
	if _, _, err := runCmd(t, runConfig, "services:\n  bogus: {enabled: true}\n", "validate", "--config", "-"); err == nil || !strings.Contains(err.Error(), `services.bogus: kiln has no service "bogus"`) {
		t.Errorf("config validate unknown service = %v, want the services.bogus error", err)
	}
	if _, _, err := runCmd(t, runConfig, "", "validate"); !errors.Is(err, errUsage) {
		t.Errorf("config validate (no --config) = %v, want errUsage", err)
	}
}
