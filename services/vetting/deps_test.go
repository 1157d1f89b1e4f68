package vetting

import (
	"os/exec"
	"strings"
	"testing"
)

// goDeps lists the non-standard packages pkgs depend on (themselves included).
func goDeps(t *testing.T, pkgs ...string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool on PATH to list dependencies: %v", err)
	}
	out, err := exec.Command(goTool, append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, pkgs...)...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	return strings.Fields(string(out))
}

// agentInit are the init/ packages the live image's kiln-agent runs as PID 1
// with: modprobe, coldplug, DHCP at boot, the reaper, the halt calls.
var agentInit = []string{"kiln.dev/kiln/init/kmod", "kiln.dev/kiln/init/coldplug", "kiln.dev/kiln/init/bootnet",
	"kiln.dev/kiln/init/reap", "kiln.dev/kiln/init/shutdown"}

// TestAgentDeps keeps the live image's agent small: the vetting packages
// depend on the standard library, golang.org/x/sys, x/crypto (the hold's
// SSH server) and yaml.v3 only — no SQLite, no appliance services, nothing
// from init/. kiln-agent adds the few init/ packages a PID 1 needs
// (agentInit) and what they import, nothing else.
func TestAgentDeps(t *testing.T) {
	// The orchestrator's view of the libraries is the same closure; the
	// capture tooling under inventory/internal is not part of the agent.
	var pkgs []string
	for _, p := range []string{"agent", "agent/sshhold", "inventory", "inventory/smbios", "protocol", "spec", "stages", "verdict"} {
		pkgs = append(pkgs, "kiln.dev/kiln/services/vetting/"+p)
	}
	allowed := []string{"kiln.dev/kiln/services/vetting", "kiln.dev/kiln/internal/cmdline", "golang.org/x/sys/", "golang.org/x/crypto/", "gopkg.in/yaml.v3"}
	ok := func(pkg string, allowed []string) bool {
		for _, a := range allowed {
			if strings.HasPrefix(pkg, a) {
				return true
			}
		}
		return false
	}
	for _, pkg := range goDeps(t, pkgs...) {
		if !ok(pkg, allowed) {
			t.Errorf("the vetting agent depends on %s; keep the live image's agent to the standard library, internal/cmdline, x/sys, x/crypto and yaml.v3", pkg)
		}
	}

	initDeps := map[string]bool{}
	for _, p := range goDeps(t, agentInit...) {
		initDeps[p] = true
	}
	for _, pkg := range goDeps(t, "kiln.dev/kiln/cmd/kiln-agent") {
		if pkg == "kiln.dev/kiln/cmd/kiln-agent" || ok(pkg, allowed) || initDeps[pkg] {
			continue
		}
		t.Errorf("kiln-agent depends on %s; the live image's PID 1 may add only %v and their imports", pkg, agentInit)
	}
}
