package pid1

import (
	"os/exec"
	"strings"
	"testing"
)

// TestInitDoesNotImportAPIOrStore enforces the layering rule: nothing under
// init/ reaches the API service or the database (PID 1 must boot without them).
func TestInitDoesNotImportAPIOrStore(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}}", "kiln.dev/kiln/init/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "kiln.dev/kiln/services/api") || strings.HasPrefix(p, "kiln.dev/kiln/services/store") {
			t.Errorf("a package under init/ depends on %s; PID 1 must not need the API or the database", p)
		}
	}
}
