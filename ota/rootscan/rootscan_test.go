package rootscan

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// eioAfter reads n good bytes, then fails like a dm-verity block that does
// not match.
type eioAfter struct{ n int }

func (r *eioAfter) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, syscall.EIO
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

func TestScan(t *testing.T) {
	good := Start(context.Background(), bytes.NewReader(make([]byte, 3<<20+5)), 3<<20+5, "/dev/dm-0")
	if err := good.Wait(); err != nil {
		t.Errorf("Scan(clean device) = %v", err)
	}
	if err := good.Check(context.Background()); err != nil {
		t.Errorf("Check after a clean scan = %v", err)
	}
	bad := Start(context.Background(), &eioAfter{n: 5 << 20}, 64<<20, "/dev/dm-0")
	err := bad.Wait()
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "at byte 5242880") || !strings.Contains(err.Error(), "input/output error") {
		t.Errorf("Scan(EIO at 5 MiB) = %v, want ErrCorrupt naming the byte and EIO", err)
	}
	if err := bad.Check(context.Background()); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Check after a failed scan = %v, want ErrCorrupt", err)
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	running := Start(context.Background(), pr, 100, "/dev/dm-0")
	if err := running.Check(context.Background()); !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), "0 of 100 bytes") {
		t.Errorf("Check during the scan = %v, want ErrRunning with the progress", err)
	}
}

func TestFindDevice(t *testing.T) {
	sys := t.TempDir()
	for name, dm := range map[string]string{"dm-0": "other", "dm-3": "kiln-root", "vda": ""} {
		os.MkdirAll(filepath.Join(sys, name, "dm"), 0o755)
		if dm != "" {
			os.WriteFile(filepath.Join(sys, name, "dm", "name"), []byte(dm+"\n"), 0o644)
		}
	}
	if got, err := FindDevice(sys, "/dev", "kiln-root"); err != nil || got != "/dev/dm-3" {
		t.Errorf("FindDevice(kiln-root) = %q, %v; want /dev/dm-3", got, err)
	}
	if _, err := FindDevice(sys, "/dev", "missing"); err == nil || !strings.Contains(err.Error(), "not mounted through dm-verity") {
		t.Errorf("FindDevice(missing) = %v", err)
	}
}
