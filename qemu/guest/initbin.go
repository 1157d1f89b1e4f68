package guest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// initPackage is the guest's PID 1.
const initPackage = "kiln.dev/kiln/qemu/guest/internal/guestinit"

// buildInit builds the guest init (static, CGO_ENABLED=0) into cache/init
// from the module at root. The go command leaves an up-to-date binary as it
// is, so a warm start costs only its up-to-date check.
func buildInit(ctx context.Context, root, cache string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, serr := os.Stat(goBin); serr != nil {
			return "", fmt.Errorf("%w: the go command is not in PATH (it builds the guest init): %v", errUnavailable, err)
		}
	}
	unlock, err := lockDir(cache)
	if err != nil {
		return "", err
	}
	defer unlock()
	out := filepath.Join(cache, "init")
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, initPackage)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the guest init (%s): %v\n%s", initPackage, err, b)
	}
	return out, nil
}
