package stage1

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/init/blockdev"
)

const rootUUID = "8D3F1C2A-5B6E-4F70-8A9B-0C1D2E3F4A5B"

// fakeDisk makes sysfs and /dev entries for disk "vda" with partitions
// vda1..vda2; when withGPT, /dev/vda is a GPT image whose partition 2 has rootUUID.
func fakeDisk(t *testing.T, withGPT bool) blockdev.Sys {
	t.Helper()
	dir := t.TempDir()
	s := blockdev.Sys{Block: filepath.Join(dir, "block"), Dev: filepath.Join(dir, "dev")}
	for _, p := range []string{"vda/vda1", "vda/vda2"} {
		if err := os.MkdirAll(filepath.Join(s.Block, p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.Block, p, "partition"), []byte(p[len(p)-1:]+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(s.Dev, 0o755)
	img := filepath.Join(s.Dev, "vda")
	if err := os.WriteFile(img, make([]byte, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if withGPT {
		if _, err := exec.LookPath("sgdisk"); err != nil {
			t.Skip("sgdisk not installed (apt-get install gdisk): needed to build test disks")
		}
		out, err := exec.Command("sgdisk", "-n", "1:2048:+4M", "-n", "2:0:+4M", "-u", "2:"+rootUUID, img).CombinedOutput()
		if err != nil {
			t.Fatalf("sgdisk: %v\n%s", err, out)
		}
	}
	for _, p := range []string{"vda1", "vda2"} {
		os.WriteFile(filepath.Join(s.Dev, p), nil, 0o644)
	}
	return s
}

func TestWaitForRootFinds(t *testing.T) {
	s := fakeDisk(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dev, err := WaitForRoot(ctx, Options{Out: &bytes.Buffer{}}, s, t.TempDir(), strings.ToLower(rootUUID), nil, 10*time.Millisecond)
	if err != nil || dev != filepath.Join(s.Dev, "vda2") {
		t.Errorf("WaitForRoot = %q, %v; want %s", dev, err, filepath.Join(s.Dev, "vda2"))
	}
}

func TestWaitForRootTimesOutSayingWhatItSaw(t *testing.T) {
	s := fakeDisk(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := WaitForRoot(ctx, Options{Out: &bytes.Buffer{}}, s, t.TempDir(), rootUUID, nil, 10*time.Millisecond)
	for _, want := range []string{"root partition PARTUUID=" + rootUUID + " not found after", "disks seen: vda(vda1,vda2)"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("WaitForRoot error = %v, want it to contain %q", err, want)
		}
	}
}
