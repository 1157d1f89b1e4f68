package stage1

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the initramfs binary small: stage 1 may use the
// standard library, x/sys and its own few kiln packages, nothing else.
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "kiln.dev/kiln/cmd/kiln-stage1").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := map[string]bool{
		"kiln.dev/kiln/cmd/kiln-stage1": true,
		"kiln.dev/kiln/init/stage1":     true,
		"kiln.dev/kiln/init/kmod":       true,
		"kiln.dev/kiln/init/coldplug":   true,
		"kiln.dev/kiln/init/blockdev":   true,
		"kiln.dev/kiln/init/gpt":        true,
		"kiln.dev/kiln/init/isofs":      true,
		"kiln.dev/kiln/init/dm":         true,
		"kiln.dev/kiln/image/verity":    true, // the kiln.verity format, standard library only
	}
	for _, p := range strings.Fields(string(out)) {
		if !allowed[p] && !strings.HasPrefix(p, "golang.org/x/sys/") {
			t.Errorf("kiln-stage1 depends on %s; keep the initramfs binary to the standard library, x/sys and the stage-1 packages", p)
		}
	}
}
