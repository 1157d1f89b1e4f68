package image

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/image/debs"
	"kiln.dev/kiln/image/hosttool"
	"kiln.dev/kiln/image/kmod"
	"kiln.dev/kiln/partitions"
	"kiln.dev/kiln/services/config"
)

// cacheDir is where tests look for the pinned .debs: $KILN_DEB_CACHE or the
// build's default cache (filled by "kiln image fetch" / make image).
func cacheDir() string {
	if d := os.Getenv("KILN_DEB_CACHE"); d != "" {
		return d
	}
	for _, d := range []string{filepath.Join("..", "out", "cache", "debs"), filepath.Join("..", "out", "cache")} {
		if m, _ := filepath.Glob(filepath.Join(d, "linux-image-*.deb")); len(m) > 0 {
			return d
		}
	}
	return filepath.Join("..", "out", "cache", "debs")
}

// cachedLock returns the lock and skips the test unless every pinned .deb is cached.
func cachedLock(t *testing.T) debs.Lock {
	t.Helper()
	l, err := debs.ReadLock("packages.lock")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hosttool.DpkgDeb.Path(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	for _, p := range l.Pins {
		m, _ := filepath.Glob(filepath.Join(cacheDir(), p.Name+"_*.deb"))
		if len(m) == 0 {
			t.Skipf("skipping: %s is not in the package cache %s (run: go run ./cmd/kiln image fetch, or set KILN_DEB_CACHE)", p.Name, cacheDir())
		}
	}
	return l
}

var (
	kernelOnce sync.Once
	kernelVal  *kernelTree
	kernelErr  error
)

func testKernel(t *testing.T) *kernelTree {
	t.Helper()
	l := cachedLock(t)
	kernelOnce.Do(func() {
		pin, err := l.Kernel()
		if err != nil {
			kernelErr = err
			return
		}
		path, err := debs.Cache{Dir: cacheDir()}.Fetch(context.Background(), pin)
		if err != nil {
			kernelErr = err
			return
		}
		kernelVal, kernelErr = readKernel(context.Background(), path, pin.KernelRelease())
	})
	if kernelErr != nil {
		t.Fatal(kernelErr)
	}
	return kernelVal
}

// TestModulesMatchDepmod writes the root module closure to a tree and compares
// the Go-generated modules.dep/modules.alias with what kmod's depmod computes from
// the modules' symbols.
func TestModulesMatchDepmod(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: reads the whole kernel package (-short)")
	}
	depmod, err := hosttool.Depmod.Path()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	k := testKernel(t)
	mods, _, err := k.tree.Closure(rootModules, rootOptionalModules)
	if err != nil {
		t.Fatal(err)
	}
	files, err := k.moduleFiles(mods)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	modDir := filepath.Join(root, "lib", "modules", k.release)
	for name, data := range files {
		if strings.HasPrefix(name, "modules.") && name != "modules.order" && name != "modules.builtin" {
			continue // depmod writes its own
		}
		p := filepath.Join(modDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(depmod, "-b", root, k.release).CombinedOutput(); err != nil {
		t.Fatalf("depmod: %v\n%s", err, out)
	}
	want, err := os.ReadFile(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	wantDeps, gotDeps := parseDep(t, want), parseDep(t, files["modules.dep"])
	sets := func(m map[string][]string) map[string][]string {
		out := map[string][]string{}
		for k, v := range m {
			s := slices.Clone(v)
			slices.Sort(s)
			out[k] = s
		}
		return out
	}
	if diff := cmp.Diff(sets(wantDeps), sets(gotDeps)); diff != "" {
		t.Errorf("modules.dep dependency sets differ from depmod's (-depmod +go):\n%s", diff)
	}
	// Order: every module is listed before its own dependencies.
	for mod, deps := range gotDeps {
		for i, d := range deps {
			for _, dd := range gotDeps[d] {
				if j := slices.Index(deps, dd); j >= 0 && j < i {
					t.Errorf("modules.dep line of %s lists %s before its user %s", mod, dd, d)
				}
			}
		}
	}
	wantAlias, err := os.ReadFile(filepath.Join(modDir, "modules.alias"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(aliasLines(wantAlias), aliasLines(files["modules.alias"])); diff != "" {
		t.Errorf("modules.alias differs from depmod's (-depmod +go):\n%s", diff)
	}
	t.Logf("%d modules; modules.dep and modules.alias agree with depmod", len(mods))
}

func parseDep(t *testing.T, data []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		mod, deps, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			t.Fatalf("bad modules.dep line %q", sc.Text())
		}
		out[mod] = strings.Fields(deps)
	}
	return out
}

func aliasLines(data []byte) []string {
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "alias ") {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

func TestRequiredModulesPresent(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: reads the whole kernel package (-short)")
	}
	k := testKernel(t)
	mods, skipped, err := k.tree.Closure(rootModules, rootOptionalModules)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, m := range mods {
		have[m.Name] = true
	}
	for _, name := range rootModules {
		if !have[kmod.Normalize(name)] && !k.tree.Builtin(name) && !slices.Contains([]string{"crc32c"}, name) {
			t.Errorf("root closure lacks %s", name)
		}
	}
	t.Logf("root closure: %d modules, skipped (built in or absent): %v", len(mods), skipped)
}

func TestDefaultConfigParses(t *testing.T) {
	if _, err := config.Parse(bytes.NewReader(DefaultConfig())); err != nil {
		t.Errorf("config.Parse(defaults/kiln.yaml) = %v, want nil", err)
	}
}

func TestParseLdd(t *testing.T) {
	out := []byte(`	linux-vdso.so.1 (0x00007ffd)
	libext2fs.so.2 => /lib/x86_64-linux-gnu/libext2fs.so.2 (0x00007f)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)
	/lib64/ld-linux-x86-64.so.2 (0x00007f)
`)
	got, err := parseLdd(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libext2fs.so.2", "/lib64/ld-linux-x86-64.so.2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseLdd mismatch (-want +got):\n%s", diff)
	}
	if _, err := parseLdd([]byte("\tlibfoo.so => not found\n")); err == nil {
		t.Error("parseLdd(not found) = nil error, want error")
	}
}

func TestSpecValidate(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	good := Spec{Kiln: bin, Stage1: bin, ApplianceID: "a", Version: "1", Generation: 1}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Spec)
		want string
	}{
		{"no stage1", func(s *Spec) { s.Stage1 = "/nonexistent" }, "--stage1"},
		{"hello replaces stage1", func(s *Spec) { s.Stage1 = ""; s.HelloInit = "/nonexistent" }, "--hello-init"},
		{"generation 0", func(s *Spec) { s.Generation = 0 }, "--generation"},
		{"empty id", func(s *Spec) { s.ApplianceID = "" }, "--appliance-id"},
		{"bad version", func(s *Spec) { s.Version = "a\"b" }, "--version"},
		{"bad compression", func(s *Spec) { s.Compression = "lz4" }, "compression"},
		{"private key as OTA key", func(s *Spec) { s.OTAKeys = []string{bin} }, "--ota-key"},
		{"missing OTA key", func(s *Spec) { s.OTAKeys = []string{"/nonexistent/ota.pub"} }, "--ota-key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.mod(&s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestESPFilesHaveEntry(t *testing.T) {
	s := Spec{ApplianceID: "kiln-dev", Version: "1.0", Generation: 1}
	p := &Payloads{Kernel: []byte("k"), Initrd: []byte("i"), BootEFI: []byte("e")}
	var names []string
	for _, f := range espFiles(s, p) {
		names = append(names, f.Path)
		if f.Path == "loader/entries/kiln-1.conf" {
			uuid := strings.ToLower(partitions.PartUUID("kiln-dev", partitions.RoleRootA))
			if !bytes.Contains(f.Data, []byte("root=PARTUUID="+uuid+" kiln.slot=a")) {
				t.Errorf("entry kiln-1.conf = %q, want root=PARTUUID=%s kiln.slot=a", f.Data, uuid)
			}
		}
		if f.Path == "loader/loader.conf" && bytes.Contains(f.Data, []byte("default")) {
			t.Errorf("loader.conf has a default line: %q", f.Data)
		}
	}
	want := []string{"EFI/BOOT/BOOTX64.EFI", "loader/loader.conf", "loader/entries/kiln-1.conf",
		"grub/grub.cfg", "grub/grubenv", "kiln/a/grub.cfg", "kiln/a/vmlinuz", "kiln/a/initrd", "kiln/b/vmlinuz", "kiln/b/initrd"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("ESP files mismatch (-want +got):\n%s", diff)
	}
}
