package hosttool

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestMissingToolNamesPackage(t *testing.T) {
	tool := Tool{Name: "kiln-no-such-tool", Package: "kiln-tools"}
	_, err := tool.Run(context.Background(), "")
	if !errors.Is(err, ErrMissing) {
		t.Fatalf("Run(missing tool) error = %v, want ErrMissing", err)
	}
	for _, want := range []string{"kiln-no-such-tool", "apt-get install kiln-tools"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Run(missing tool) error %q does not mention %q", err, want)
		}
	}
}

func TestRunErrorCarriesStderr(t *testing.T) {
	sh := Tool{Name: "sh", Package: "dash"}
	_, err := sh.Run(context.Background(), "", "-c", "echo boom >&2; exit 3")
	var re *RunError
	if !errors.As(err, &re) || !strings.Contains(re.Stderr, "boom") {
		t.Errorf("Run(failing) error = %v, want a RunError with stderr boom", err)
	}
}
