package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/image"
)

// fakeBuildArgs returns image build flags with small fake binaries that pass
// validation, writing the image to out.
func fakeBuildArgs(t *testing.T, out string) []string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range []string{"kiln", "kiln-stage1"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/false\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"--out", filepath.Join(out, "kiln.img"), "--qcow2", "", "--busybox", "",
		"--lock", "../../image/packages.lock", "--cache", filepath.Join(dir, "cache"),
		"--kiln", filepath.Join(dir, "kiln"), "--stage1", filepath.Join(dir, "kiln-stage1")}
}

func TestImageBuildFullDisk(t *testing.T) {
	out := t.TempDir()
	statfs := func(dir string) (image.FS, error) {
		if dir == out {
			return image.FS{ID: "out", Free: 3 << 20}, nil
		}
		return image.FS{ID: "other", Free: 1 << 40}, nil
	}
	var o, e bytes.Buffer
	err := imageBuild(context.Background(), fakeBuildArgs(t, out), stdio{out: &o, err: &e}, statfs)
	if !errors.Is(err, image.ErrNoSpace) {
		t.Fatalf("image build with 3 MiB free = %v, want ErrNoSpace", err)
	}
	for _, want := range []string{out + " has 3 MiB free", "df -h " + out, "--out /other/dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("image build with 3 MiB free = %v, want it to mention %q", err, want)
		}
	}
}

func TestImageBuildFullTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	out := t.TempDir()
	if err := unix.Mount("tmpfs", out, "tmpfs", 0, "size=16m"); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): this test needs CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() { unix.Unmount(out, unix.MNT_DETACH) })
	var o, e bytes.Buffer
	err := runImage(context.Background(), append([]string{"build"}, fakeBuildArgs(t, out)...), stdio{out: &o, err: &e})
	if !errors.Is(err, image.ErrNoSpace) {
		t.Fatalf("image build onto a 16 MiB tmpfs = %v, want ErrNoSpace", err)
	}
	for _, want := range []string{out + " has 16 MiB free", "df -h " + out} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("image build onto a 16 MiB tmpfs = %v, want it to mention %q", err, want)
		}
	}
	t.Log(err)
}
