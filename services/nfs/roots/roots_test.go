package roots

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"kiln.dev/kiln/services/nfs"
	"kiln.dev/kiln/services/store"
)

// elfHeader is a minimal 64-bit little-endian ELF header for machine m.
func elfHeader(m uint16) []byte {
	b := make([]byte, 64)
	copy(b, "\x7fELF\x02\x01\x01")
	binary.LittleEndian.PutUint16(b[16:], 2) // ET_EXEC
	binary.LittleEndian.PutUint16(b[18:], m)
	binary.LittleEndian.PutUint32(b[20:], 1)
	binary.LittleEndian.PutUint16(b[52:], 64)
	binary.LittleEndian.PutUint16(b[54:], 56)
	binary.LittleEndian.PutUint16(b[58:], 64)
	return b
}

// entry is one archive member: "d name", "f name mode content", "l name target", "h name target".
type entry struct {
	typ          byte
	name, target string
	mode         int64
	body         []byte
}

func dir(n string) entry { return entry{typ: tar.TypeDir, name: n, mode: 0o755} }
func file(n string, mode int64, b []byte) entry {
	return entry{typ: tar.TypeReg, name: n, mode: mode, body: b}
}
func symlink(n, target string) entry {
	return entry{typ: tar.TypeSymlink, name: n, target: target, mode: 0o777}
}
func hardlink(n, target string) entry          { return entry{typ: tar.TypeLink, name: n, target: target} }
func device(n string) entry                    { return entry{typ: tar.TypeChar, name: n, mode: 0o666} }
func archive(t *testing.T, es ...entry) []byte { return tarOf(t, es) }

func tarOf(t *testing.T, es []entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := &tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.target, Mode: e.mode, Size: int64(len(e.body)),
			ModTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// goodRoot is a usrmerged root whose /sbin/init is an absolute symbolic link.
func goodRoot() []entry {
	return []entry{
		dir("./"), dir("etc/"), file("etc/os-release", 0o644, []byte("ID=contest\n")),
		dir("usr/"), dir("usr/sbin/"), dir("usr/lib/"), dir("usr/lib/systemd/"),
		file("usr/lib/systemd/systemd", 0o755, elfHeader(62)),
		symlink("sbin", "usr/sbin"), symlink("usr/sbin/init", "/usr/lib/systemd/systemd"),
		hardlink("etc/os-release.hard", "etc/os-release"),
		file("usr/bin-suid", 0o4755, []byte("#!/bin/sh\n")),
		dir("dev/"), device("dev/console"),
	}
}

func newManager(t *testing.T) (*Manager, *store.Store) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("root images keep their files' owners: needs root (chown)")
	}
	state := t.TempDir()
	st, err := store.Open(context.Background(), store.Path(state))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Manager{Store: st, Layout: nfs.LayoutOf(state)}, st
}

func TestImportFormats(t *testing.T) {
	plain := archive(t, goodRoot()...)
	var gz, xzb, zs bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	xw, _ := xz.NewWriter(&xzb)
	xw.Write(plain)
	xw.Close()
	sw, _ := zstd.NewWriter(&zs)
	sw.Write(plain)
	sw.Close()
	m, _ := newManager(t)
	ctx := context.Background()
	for i, tc := range []struct {
		name string
		data []byte
	}{{"tar", plain}, {"gzip", gz.Bytes()}, {"xz", xzb.Bytes()}, {"zstd", zs.Bytes()}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.Import(ctx, "contest", bytes.NewReader(tc.data), "contest."+tc.name, false)
			if err != nil {
				t.Fatalf("Import(%s) = %v", tc.name, err)
			}
			if got.Version != i+1 || got.Skipped != 1 || got.Source != "contest."+tc.name {
				t.Errorf("Import(%s) = %+v, want version %d, 1 device skipped", tc.name, got, i+1)
			}
			d := m.Layout.RootDir("contest", got.Version)
			if b, err := os.ReadFile(filepath.Join(d, "etc", "os-release")); err != nil || string(b) != "ID=contest\n" {
				t.Errorf("etc/os-release = %q, %v", b, err)
			}
			fi, err := os.Stat(filepath.Join(d, "usr", "bin-suid"))
			if err != nil || fi.Mode()&os.ModeSetuid == 0 || fi.Mode().Perm() != 0o755 {
				t.Errorf("usr/bin-suid mode = %v, %v; want setuid 0755", fi.Mode(), err)
			}
			a, _ := os.Stat(filepath.Join(d, "etc", "os-release.hard"))
			b, _ := os.Stat(filepath.Join(d, "etc", "os-release"))
			if a == nil || b == nil || !os.SameFile(a, b) {
				t.Error("the hard link is not one file with its target")
			}
			if fi, err := os.Stat(filepath.Join(d, "etc")); err != nil || !fi.ModTime().Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
				t.Errorf("etc's mtime = %v, %v; want the archive's", fi.ModTime(), err)
			}
		})
	}
	if left, _ := os.ReadDir(m.Layout.Staging); len(left) != 0 {
		t.Errorf("staging keeps %d entries after the imports", len(left))
	}
}

func TestImportRefuses(t *testing.T) {
	m, st := newManager(t)
	ctx := context.Background()
	if _, err := m.Import(ctx, "contest", bytes.NewReader(archive(t, goodRoot()...)), "ok.tar", true); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(filepath.Dir(m.Layout.State), "escaped")
	// without replaces entry drop by add (in its place) or removes it.
	without := func(drop string, add ...entry) []entry {
		var out []entry
		for _, e := range goodRoot() {
			if e.name != drop {
				out = append(out, e)
			} else {
				out = append(out, add...)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		entries []entry
		want    string
	}{
		{"no etc", nil, "no directory /etc"},
		{"no init", without("usr/sbin/init"), "/sbin/init: /usr/sbin/init does not exist"},
		{"dangling init", without("usr/lib/systemd/systemd"), "/usr/lib/systemd/systemd does not exist"},
		{"init not executable", without("usr/lib/systemd/systemd", file("usr/lib/systemd/systemd", 0o644, elfHeader(62))), "is not executable"},
		{"init for arm64", without("usr/lib/systemd/systemd", file("usr/lib/systemd/systemd", 0o755, elfHeader(183))), "EM_AARCH64 program"},
		{"init is text", without("usr/lib/systemd/systemd", file("usr/lib/systemd/systemd", 0o755, []byte("hello"))), "neither an ELF program nor a #! script"},
		{"init loops", without("usr/sbin/init", symlink("usr/sbin/init", "init")), "too many symbolic links"},
		{"dot-dot name", append(goodRoot(), file("../escaped", 0o644, []byte("x"))), "leads outside the root"},
		{"through an absolute link", append(goodRoot(), symlink("up", outside), file("up/x", 0o644, []byte("x"))), "entry \"up/x\""},
		{"through a relative link", append(goodRoot(), symlink("up", "../../../.."), file("up/x", 0o644, []byte("x"))), "entry \"up/x\""},
		{"hard link outside", append(goodRoot(), hardlink("pw", "../../../../etc/passwd")), "leads outside the root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es := tc.entries
			if tc.name == "no etc" {
				for _, e := range goodRoot() {
					if !strings.HasPrefix(e.name, "etc") {
						es = append(es, e)
					}
				}
			}
			_, err := m.Import(ctx, "contest", bytes.NewReader(archive(t, es...)), "bad.tar", true)
			if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "image:") {
				t.Errorf("Import(%s) = %v, want ErrInvalid on field image containing %q", tc.name, err, tc.want)
			}
		})
	}
	if _, err := os.Stat(outside); err == nil {
		t.Error("an archive wrote outside its root")
	}
	if _, err := m.Import(ctx, "Contest!", bytes.NewReader(archive(t, goodRoot()...)), "x.tar", false); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "name:") {
		t.Errorf("Import(bad name) = %v, want ErrInvalid on field name", err)
	}
	m.Space = func() (int64, error) { return 1 << 20, nil }
	if _, err := m.Import(ctx, "contest", bytes.NewReader(archive(t, goodRoot()...)), "x.tar", true); !errors.Is(err, ErrDataFull) {
		t.Errorf("Import(full data partition) = %v, want ErrDataFull", err)
	}
	all, _ := st.RootImages(ctx)
	if len(all) != 1 || !all[0].Promoted {
		t.Errorf("after refused imports, root images = %+v, want the first one, promoted", all)
	}
	if b, err := os.ReadFile(filepath.Join(m.Layout.RootDir("contest", 1), "etc", "os-release")); err != nil || string(b) != "ID=contest\n" {
		t.Errorf("the exported version changed: %q, %v", b, err)
	}
	if left, _ := os.ReadDir(m.Layout.Staging); len(left) != 0 {
		t.Errorf("staging keeps %d entries after refused imports", len(left))
	}
}

func TestPromoteRemove(t *testing.T) {
	m, st := newManager(t)
	ctx := context.Background()
	for range 2 {
		if _, err := m.Import(ctx, "contest", bytes.NewReader(archive(t, goodRoot()...)), "a.tar", false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Promote(ctx, "contest"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Promote(no version) = %v, want ErrInvalid", err)
	}
	if ri, err := m.Promote(ctx, "contest@2"); err != nil || !ri.Promoted {
		t.Fatalf("Promote(contest@2) = %+v, %v", ri, err)
	}
	if err := m.Remove(ctx, "contest@2", true); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Remove(promoted) = %v, want ErrConflict", err)
	}
	if err := m.Remove(ctx, "contest@1", false); err != nil {
		t.Fatalf("Remove(contest@1) = %v", err)
	}
	if _, err := os.Stat(m.Layout.RootDir("contest", 1)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("contest@1's files after Remove: %v", err)
	}
	if all, _ := st.RootImages(ctx); len(all) != 1 || all[0].Version != 2 {
		t.Errorf("after Remove, root images = %+v", all)
	}
	// The next version never reuses a number still on disk.
	os.MkdirAll(m.Layout.RootDir("contest", 5), 0o755)
	if got, err := m.Import(ctx, "contest", bytes.NewReader(archive(t, goodRoot()...)), "a.tar", false); err != nil || got.Version != 6 {
		t.Errorf("Import after a leftover version 5 = %+v, %v; want version 6", got, err)
	}
}

// TestWriteTarRoundTrip: a directory uploaded by `kiln roots import DIR`
// (WriteTar) comes back with the same names, modes, links and contents.
func TestWriteTarRoundTrip(t *testing.T) {
	m, _ := newManager(t)
	ctx := context.Background()
	first, err := m.Import(ctx, "contest", bytes.NewReader(archive(t, goodRoot()...)), "a.tar", false)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteTar(&b, m.Layout.RootDir("contest", first.Version)); err != nil {
		t.Fatal(err)
	}
	second, err := m.Import(ctx, "contest", &b, "dir", false)
	if err != nil {
		t.Fatal(err)
	}
	if second.Size != first.Size || second.Files != first.Files || second.Skipped != 0 {
		t.Errorf("re-import = %d bytes, %d files, %d skipped; want %d bytes, %d files, none skipped", second.Size, second.Files, second.Skipped, first.Size, first.Files)
	}
	list := func(v int) string {
		var out strings.Builder
		Walk(m.Layout.RootDir("contest", v), func(h *tar.Header, body io.Reader) error {
			fmt.Fprintf(&out, "%s %c %o %s %d\n", h.Name, h.Typeflag, h.Mode, h.Linkname, h.Size)
			return nil
		})
		return out.String()
	}
	if a, b := list(1), list(2); a != b {
		t.Errorf("trees differ:\n%s\nvs\n%s", a, b)
	}
}
