package console

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestDependencies keeps the recovery console small: it runs in PID 1 and must
// work when everything else is broken.
func TestDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool on PATH to list dependencies: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	allowed := []string{
		"kiln.dev/kiln/init/console",
		"kiln.dev/kiln/partitions",
		"kiln.dev/kiln/services/config",
		"gopkg.in/yaml.v3", // via services/config
		"golang.org/x/sys/unix",
	}
	for _, dep := range strings.Fields(string(out)) {
		if !slices.Contains(allowed, dep) {
			t.Errorf("init/console depends on %s; keep the recovery console's dependencies to %v", dep, allowed)
		}
	}
}
