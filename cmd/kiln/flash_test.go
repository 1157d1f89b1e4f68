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

func TestRunFlashUsage(t *testing.T) {
	img := filepath.Join(t.TempDir(), "kiln.qcow2")
	os.WriteFile(img, append([]byte("QFI\xfb"), make([]byte, 4096)...), 0o644)
	for _, tc := range []struct {
		name      string
		args      []string
		wantUsage bool
		wantText  string
	}{
		{"bad flag", []string{"--nope"}, true, "flash"},
		{"no device", []string{img}, true, "--device"},
		{"two images", []string{"--device", "/dev/sdz", "a", "b"}, true, "one IMAGE"},
		{"qcow2", []string{"--device", "/dev/null", "--yes", img}, false, "flash the raw image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := runFlash(context.Background(), tc.args, stdio{in: strings.NewReader(""), out: &out, err: &errb})
			if err == nil {
				t.Fatalf("runFlash(%q) = nil, want error", tc.args)
			}
			if got := errors.Is(err, errUsage); got != tc.wantUsage {
				t.Errorf("runFlash(%q) usage error = %v, want %v (%v)", tc.args, got, tc.wantUsage, err)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("runFlash(%q) = %v, want it to mention %q", tc.args, err, tc.wantText)
			}
		})
	}
}
