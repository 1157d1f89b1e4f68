package tftp

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{"ipxe.efi", "ipxe.efi", nil},
		{"/ipxe.efi", "ipxe.efi", nil},
		{"//ipxe.efi", "ipxe.efi", nil},
		{"./ipxe.efi", "ipxe.efi", nil},
		{"efi/./snp.efi", "efi/snp.efi", nil},
		{`boot\x64\wdsnbp.com`, "boot/x64/wdsnbp.com", nil},
		{"pxelinux.cfg/01-52-54-00-12-34-56", "pxelinux.cfg/01-52-54-00-12-34-56", nil},
		{"a..b", "a..b", nil},
		{"..", "", ErrAccess},
		{"../etc/passwd", "", ErrAccess},
		{"/../etc/passwd", "", ErrAccess},
		{"a/../../b", "", ErrAccess},
		{"a/../b", "", ErrAccess},
		{`..\windows`, "", ErrAccess},
		{"a\x00b", "", ErrAccess},
		{"a\nb", "", ErrAccess},
		{"a\x7fb", "", ErrAccess},
		{"", "", ErrAccess},
		{"/", "", ErrAccess},
		{"./.", "", ErrAccess},
		{strings.Repeat("a", 256), "", ErrAccess},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := CleanPath(tc.in)
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Errorf("CleanPath(%q) = %q, %v, want %q, %v", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"ipxe.efi", "/a/b", `a\..\b`, "../x", "a\x00", "./.", "a//b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := CleanPath(in)
		if err != nil {
			if got != "" {
				t.Fatalf("CleanPath(%q) = %q with error %v, want empty", in, got, err)
			}
			return
		}
		if got == "" || strings.HasPrefix(got, "/") || strings.ContainsAny(got, "\x00\\") {
			t.Fatalf("CleanPath(%q) = %q, want a non-empty relative path without NUL or backslash", in, got)
		}
		for _, p := range strings.Split(got, "/") {
			if p == "" || p == "." || p == ".." {
				t.Fatalf("CleanPath(%q) = %q has component %q", in, got, p)
			}
		}
		if rel, err := filepath.Rel("/srv/root", filepath.Join("/srv/root", got)); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			t.Fatalf("CleanPath(%q) = %q escapes the root (rel %q, %v)", in, got, rel, err)
		}
		if again, err := CleanPath(got); again != got || err != nil {
			t.Fatalf("CleanPath(CleanPath(%q)) = %q, %v, want %q (idempotent)", in, again, err, got)
		}
	})
}

// testRoot builds a root with a file, a subdirectory, a FIFO and symlinks
// pointing inside and outside it.
func testRoot(t testing.TB) (root string, inside map[string]os.FileInfo) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "root")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(root, "a"), []byte("a"), 0o644))
	must(os.WriteFile(filepath.Join(root, "sub", "b"), []byte("b"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o644))
	must(os.Symlink("../secret", filepath.Join(root, "up")))
	must(os.Symlink(filepath.Join(dir, "secret"), filepath.Join(root, "abs")))
	must(os.Symlink("sub/b", filepath.Join(root, "in")))
	must(os.Symlink("/", filepath.Join(root, "slash")))
	must(syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	inside = map[string]os.FileInfo{}
	for _, n := range []string{"a", "sub/b"} {
		fi, err := os.Stat(filepath.Join(root, n))
		must(err)
		inside[n] = fi
	}
	return root, inside
}

func TestOpen(t *testing.T) {
	root, _ := testRoot(t)
	s, err := New(Options{Root: root}, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.root.Close()
	for _, tc := range []struct {
		name string
		want string // content, or "" when refused
		err  error
	}{
		{"a", "a", nil},
		{"sub/b", "b", nil},
		{"in", "b", nil},
		{"up", "", ErrAccess},
		{"abs", "", ErrAccess},
		{"slash/etc/passwd", "", ErrAccess},
		{"fifo", "", ErrNotFound},
		{"sub", "", ErrNotFound},
		{"missing", "", ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			var got string
			var gotErr error
			go func() {
				defer close(done)
				f, _, err := s.open(tc.name)
				gotErr = err
				if err == nil {
					b := make([]byte, 16)
					n, _ := f.Read(b)
					got = string(b[:n])
					f.Close()
				}
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("open(%q) blocked for 5s", tc.name)
			}
			if got != tc.want || !errors.Is(gotErr, tc.err) {
				t.Errorf("open(%q) = %q, %v, want %q, %v", tc.name, got, gotErr, tc.want, tc.err)
			}
		})
	}
}

// FuzzOpen checks that whatever a client asks for, only files inside the
// root are ever opened, and opening never blocks.
func FuzzOpen(f *testing.F) {
	root, inside := testRoot(f)
	s, err := New(Options{Root: root}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.root.Close() })
	for _, n := range []string{"a", "/sub/b", "in", "up", "abs", "slash/etc/passwd", "fifo", "../secret", `sub\..\..\secret`} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, req string) {
		name, err := CleanPath(req)
		if err != nil {
			return
		}
		file, _, err := s.open(name)
		if err != nil {
			return
		}
		defer file.Close()
		fi, err := file.Stat()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range inside {
			if os.SameFile(fi, want) {
				return
			}
		}
		t.Fatalf("request %q opened %q, a file that is not inside the root", req, name)
	})
}

func TestBlockSizeCap(t *testing.T) {
	lo := Iface{MTU: 65536, Up: true, Loopback: true, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	eth0 := Iface{MTU: 1500, Up: true, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}
	eth1 := Iface{MTU: 9000, Up: true, Addrs: []netip.Addr{netip.MustParseAddr("10.1.0.1")}}
	down := Iface{MTU: 576, Addrs: []netip.Addr{netip.MustParseAddr("10.2.0.1")}}
	any4 := netip.MustParseAddr("0.0.0.0")
	for _, tc := range []struct {
		name   string
		listen netip.Addr
		ifaces []Iface
		max    int
		want   int
	}{
		{"wildcard smallest up non-loopback", any4, []Iface{lo, eth0, eth1, down}, 0, 1468},
		{"wildcard config cap", any4, []Iface{lo, eth0}, 1428, 1428},
		{"wildcard loopback only", any4, []Iface{lo}, 0, 65464},
		{"wildcard loopback only capped", any4, []Iface{lo}, 1468, 1468},
		{"specific jumbo", netip.MustParseAddr("10.1.0.1"), []Iface{lo, eth0, eth1}, 0, 8968},
		{"specific loopback", netip.MustParseAddr("127.0.0.1"), []Iface{lo, eth0}, 0, 65464},
		{"unknown interfaces", any4, nil, 0, 65464},
		{"tiny mtu floors at 512", any4, []Iface{{MTU: 300, Up: true}}, 0, 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := BlockSizeCap(tc.listen, tc.ifaces, tc.max); got != tc.want {
				t.Errorf("BlockSizeCap(%s, %s, %d) = %d, want %d", tc.listen, tc.name, tc.max, got, tc.want)
			}
		})
	}
}

func TestLimiter(t *testing.T) {
	l := newLimiter(3, 2)
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	steps := []struct {
		acquire bool
		who     netip.Addr
		want    bool
	}{
		{true, a, true}, {true, a, true}, {true, a, false}, // per client
		{true, b, true}, {true, c, false}, // global
		{false, a, true}, {true, c, true}, {true, b, false},
	}
	for i, s := range steps {
		if !s.acquire {
			l.release(s.who)
			continue
		}
		if got := l.acquire(s.who); got != s.want {
			t.Errorf("step %d: acquire(%s) = %v, want %v", i, s.who, got, s.want)
		}
	}
}
