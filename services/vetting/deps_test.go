package vetting

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAgentDeps keeps the live image's agent small: kiln-agent and the
// vetting packages depend on the standard library, golang.org/x/sys and
// yaml.v3 only — no SQLite, no appliance services, nothing from init/.
func TestAgentDeps(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool on PATH to list dependencies: %v", err)
	}
	// The orchestrator's view of the libraries is the same closure; the
	// capture tooling under inventory/internal is not part of the agent.
	pkgs := []string{"kiln.dev/kiln/cmd/kiln-agent"}
	for _, p := range []string{"agent", "inventory", "inventory/smbios", "protocol", "spec", "stages", "verdict"} {
		pkgs = append(pkgs, "kiln.dev/kiln/services/vetting/"+p)
	}
	out, err := exec.Command(goTool, append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, pkgs...)...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := []string{"kiln.dev/kiln/services/vetting", "kiln.dev/kiln/cmd/kiln-agent", "golang.org/x/sys/", "gopkg.in/yaml.v3"}
	for _, pkg := range strings.Fields(string(out)) {
		ok := false
		for _, a := range allowed {
			ok = ok || strings.HasPrefix(pkg, a)
		}
		if !ok {
			t.Errorf("the vetting agent depends on %s; keep the live image's agent to the standard library, x/sys and yaml.v3", pkg)
		}
	}
}
