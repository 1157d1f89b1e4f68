package debs

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/image/hosttool"
)

const (
	sumA = "49dc854857dcfb354292bdc79ce7419e0d72988666723395b2e102d147c3730d"
	sumB = "a86e2049672f52354c4536a089203b6c82639420424d31c91cf31a181fd4d8f1"
)

func TestLockRoundTrip(t *testing.T) {
	l := Lock{Pins: []Pin{
		{Name: "systemd-boot-efi", Version: "252.39-1~deb12u2", SHA256: sumA},
		{Name: "linux-image-6.1.0-56-amd64", Version: "6.1.192-2", SHA256: sumB},
		{Name: "foo", Version: "1:2.3+x", SHA256: sumA},
	}}
	got, err := ParseLock("test.lock", l.Marshal())
	if err != nil {
		t.Fatalf("ParseLock(Marshal()): %v", err)
	}
	want := []string{"foo", "linux-image-6.1.0-56-amd64", "systemd-boot-efi"}
	var names []string
	for _, p := range got.Pins {
		names = append(names, p.Name)
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("ParseLock order mismatch (-want +got):\n%s", diff)
	}
	k, err := got.Kernel()
	if err != nil || k.KernelRelease() != "6.1.0-56-amd64" {
		t.Errorf("Kernel() = %+v, %v, want release 6.1.0-56-amd64", k, err)
	}
}

func TestParseLockRejects(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"two fields", "ipxe 1.0\n"},
		{"short hash", "ipxe 1.0 abcd\n"},
		{"upper-case hash", "ipxe 1.0 " + strings.ToUpper(sumA) + "\n"},
		{"duplicate", "ipxe 1.0 " + sumA + "\nipxe 1.1 " + sumA + "\n"},
		{"bad name", "Ipxe 1.0 " + sumA + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if l, err := ParseLock("x.lock", []byte(tc.data)); err == nil {
				t.Errorf("ParseLock(%q) = %+v, want error", tc.data, l)
			}
		})
	}
}

func TestKernelMissing(t *testing.T) {
	l, _ := ParseLock("x", []byte("ipxe 1.0 "+sumA+"\n"))
	if _, err := l.Kernel(); err == nil || !strings.Contains(err.Error(), "make lock") {
		t.Errorf("Kernel() error = %v, want one telling to run make lock", err)
	}
}

func TestParseKernelDepends(t *testing.T) {
	out := []byte("linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n")
	got, err := parseKernelDepends(out)
	if err != nil || got != "linux-image-6.1.0-56-amd64" {
		t.Errorf("parseKernelDepends = %q, %v, want linux-image-6.1.0-56-amd64", got, err)
	}
	if _, err := parseKernelDepends([]byte("linux-image-amd64\n")); err == nil {
		t.Error("parseKernelDepends(no Depends) = nil error, want error")
	}
}

func TestFetchHashMismatch(t *testing.T) {
	dir := t.TempDir()
	p := Pin{Name: "ipxe", Version: "1:1.0", SHA256: sumA}
	if err := os.WriteFile(filepath.Join(dir, "ipxe_1%3a1.0_all.deb"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Cache{Dir: dir}.Fetch(context.Background(), p)
	if !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("Fetch(tampered) error = %v, want ErrHashMismatch", err)
	}
	for _, want := range []string{"ipxe", sumA, "actual"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Fetch(tampered) error %q does not mention %q", err, want)
		}
	}
}

func TestFetchGoneVersion(t *testing.T) {
	if _, err := hosttool.AptGet.Path(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	if out, err := exec.Command("apt-cache", "show", "ipxe").Output(); err != nil || len(out) == 0 {
		t.Skip("skipping: apt package lists are empty (run apt-get update)")
	}
	p := Pin{Name: "ipxe", Version: "0.0.0-kiln-never", SHA256: sumA}
	_, err := Cache{Dir: t.TempDir()}.Fetch(context.Background(), p)
	if !errors.Is(err, ErrGone) || !strings.Contains(err.Error(), "make lock") {
		t.Errorf("Fetch(gone version) error = %v, want ErrGone telling to run make lock", err)
	}
}

func TestExtract(t *testing.T) {
	dpkgDeb, err := hosttool.DpkgDeb.Path()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	root := filepath.Join(t.TempDir(), "pkg")
	for name, data := range map[string]string{
		"DEBIAN/control":         "Package: kiln-test\nVersion: 1.0\nArchitecture: all\nMaintainer: kiln\nDescription: test\n",
		"usr/lib/kiln/a.efi":     "efi",
		"usr/share/doc/x/README": "doc",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deb := filepath.Join(t.TempDir(), "kiln-test.deb")
	if out, err := exec.Command(dpkgDeb, "--root-owner-group", "--build", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build: %v\n%s", err, out)
	}
	got, err := Extract(context.Background(), deb, func(n string) bool { return strings.HasSuffix(n, ".efi") })
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]byte{"usr/lib/kiln/a.efi": []byte("efi")}, got); diff != "" {
		t.Errorf("Extract mismatch (-want +got):\n%s", diff)
	}
	// A callback error stops the walk and is returned.
	stop := errors.New("stop")
	if err := WalkDeb(context.Background(), deb, func(_ *tar.Header, _ io.Reader) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("WalkDeb(callback error) = %v, want %v", err, stop)
	}
	if _, err := Extract(context.Background(), filepath.Join(t.TempDir(), "missing.deb"), func(string) bool { return true }); err == nil {
		t.Error("Extract(missing file) = nil error, want error")
	}
}

func FuzzParseLock(f *testing.F) {
	f.Add([]byte("ipxe 1.0 " + sumA + "\n# comment\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseLock("fuzz.lock", data)
		if err != nil {
			return
		}
		again, err := ParseLock("fuzz.lock", l.Marshal())
		if err != nil {
			t.Fatalf("re-parsing a marshalled lock: %v", err)
		}
		if !cmp.Equal(l, again) {
			t.Errorf("ParseLock(Marshal(l)) = %+v, want %+v", again, l)
		}
	})
}
