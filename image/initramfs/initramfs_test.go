package initramfs

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/u-root/u-root/pkg/cpio"
)

func sample() []File {
	return []File{
		{Path: "/lib/modules/6.1.0-56-amd64/kernel/fs/squashfs/squashfs.ko", Mode: 0o644, Data: []byte("ko")},
		{Path: "/init", Mode: 0o755, Data: []byte("#!stage1")},
		{Path: "/dev", Mode: 0o755, Dir: true},
		{Path: "/sbin/init", Link: "/init"},
	}
}

func TestDeterministic(t *testing.T) {
	var a, b bytes.Buffer
	if err := Write(&a, sample()); err != nil {
		t.Fatal(err)
	}
	files := sample()
	files[0], files[3] = files[3], files[0] // input order must not matter
	if err := Write(&b, files); err != nil {
		t.Fatal(err)
	}
	if sa, sb := sha256.Sum256(a.Bytes()), sha256.Sum256(b.Bytes()); sa != sb {
		t.Errorf("Write twice = %x and %x, want identical archives", sa, sb)
	}
}

func TestContents(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, sample()); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !zr.Header.ModTime.IsZero() && zr.Header.ModTime.Unix() != 0 {
		t.Errorf("gzip header mtime = %v, want zero", zr.Header.ModTime)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		if r.MTime != 0 || r.UID != 0 || r.GID != 0 {
			t.Errorf("record %s: mtime %d uid %d gid %d, want all 0", r.Name, r.MTime, r.UID, r.GID)
		}
		got = append(got, r.Name)
	}
	want := []string{"dev", "init", "lib", "lib/modules", "lib/modules/6.1.0-56-amd64",
		"lib/modules/6.1.0-56-amd64/kernel", "lib/modules/6.1.0-56-amd64/kernel/fs",
		"lib/modules/6.1.0-56-amd64/kernel/fs/squashfs",
		"lib/modules/6.1.0-56-amd64/kernel/fs/squashfs/squashfs.ko", "sbin", "sbin/init"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("archive members mismatch (-want +got):\n%s", diff)
	}
}

func TestRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []File
	}{
		{"duplicate", []File{{Path: "/a", Data: nil}, {Path: "a"}}},
		{"file as parent", []File{{Path: "/a"}, {Path: "/a/b"}}},
		{"empty", []File{{Path: "/"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Write(io.Discard, tc.files); err == nil {
				t.Errorf("Write(%v) = nil, want error", tc.files)
			}
		})
	}
}
