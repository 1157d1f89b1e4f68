package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// tinyTmpfs mounts a tmpfs of size bytes on a new temporary directory.
func tinyTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): this test needs CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestWriteDiskFullDisk writes an image whose roots do not fit a 16 MiB file
// system: the error must say so and no partial image may be left behind.
func TestWriteDiskFullDisk(t *testing.T) {
	dir := tinyTmpfs(t, "16m")
	root := filepath.Join(t.TempDir(), PayloadRoot)
	if err := os.WriteFile(root, make([]byte, 12<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Payloads{Kernel: []byte("kernel"), Initrd: []byte("initrd"), BootEFI: []byte("efi"), RootPath: root, RootSize: 12 << 20}
	s := Spec{ApplianceID: "t", Version: "t", Generation: 1}
	out := filepath.Join(dir, "kiln.img")
	err := WriteDisk(context.Background(), s, p, out)
	if !IsNoSpace(err) {
		t.Fatalf("WriteDisk on a full disk = %v, want an ENOSPC error", err)
	}
	err = NoSpace(err, []SpaceNeed{{Dir: t.TempDir(), Flag: "TMPDIR"}, {Dir: dir, Flag: "--out"}}, HostStatfs)
	if !errors.Is(err, ErrNoSpace) {
		t.Errorf("NoSpace(WriteDisk error) = %v, want ErrNoSpace", err)
	}
	var ns *NoSpaceError
	if errors.As(err, &ns) && ns.Dir != dir {
		t.Errorf("NoSpace(WriteDisk error) blames %s, want %s: %v", ns.Dir, dir, err)
	}
	t.Log(err)
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("files left in the full output dir: %v, want none", left)
	}
}
