package store

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyStoreImportsSQL keeps SQL behind this package's typed API: no other
// package of the module imports an SQL driver or database/sql.
func TestOnlyStoreImportsSQL(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool on PATH to list imports: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-e", "-f", `{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`, "kiln.dev/kiln/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "kiln.dev/kiln/services/store" {
			continue
		}
		for _, imp := range f[1:] {
			if imp == "database/sql" || strings.HasPrefix(imp, "modernc.org/sqlite") || strings.Contains(imp, "go-sqlite3") {
				t.Errorf("%s imports %s; only services/store may talk SQL (add a typed method there)", f[0], imp)
			}
		}
	}
}
