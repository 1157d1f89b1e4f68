package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"kiln.dev/kiln/image/debs"
)

// fakeStatfs reports the file system of a directory from a table keyed by
// directory; unknown directories are on "root" with rootFree bytes.
func fakeStatfs(fs map[string]FS, rootFree uint64) Statfs {
	return func(dir string) (FS, error) {
		if f, ok := fs[dir]; ok {
			return f, nil
		}
		return FS{ID: "root", Free: rootFree}, nil
	}
}

func TestCheckSpace(t *testing.T) {
	out, cache := t.TempDir(), t.TempDir()
	const mib = 1 << 20
	needs := []SpaceNeed{
		{Dir: out, Flag: "--out", Bytes: 200 * mib},
		{Dir: cache, Flag: "--cache", Bytes: 100 * mib},
	}
	for _, tc := range []struct {
		name    string
		fs      map[string]FS
		wantErr string // "" means no error
	}{
		{"enough everywhere", map[string]FS{out: {"o", 1 << 30}, cache: {"c", 1 << 30}}, ""},
		{"output full", map[string]FS{out: {"o", 50 * mib}, cache: {"c", 1 << 30}},
			out + " has 50 MiB free, the build needs about 200 MiB there. Check with: df -h " + out + "; then free space there, or build elsewhere with --out /other/dir"},
		{"cache full", map[string]FS{out: {"o", 1 << 30}, cache: {"c", 10 * mib}}, "df -h " + cache + "; then free space there, or build elsewhere with --cache /other/dir"},
		// Each fits alone, not together.
		{"shared file system", map[string]FS{out: {"x", 250 * mib}, cache: {"x", 250 * mib}}, out + " has 250 MiB free, the build needs about 300 MiB there"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSpace(needs, fakeStatfs(tc.fs, 0))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckSpace() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("CheckSpace() = %v, want it to contain %q", err, tc.wantErr)
			}
			if !errors.Is(err, ErrNoSpace) {
				t.Errorf("CheckSpace() = %v, want errors.Is ErrNoSpace", err)
			}
		})
	}
}

func TestCheckSpaceMissingDir(t *testing.T) {
	parent := t.TempDir()
	var asked string
	statfs := func(dir string) (FS, error) { asked = dir; return FS{ID: "p", Free: 1 << 40}, nil }
	if err := CheckSpace([]SpaceNeed{{Dir: filepath.Join(parent, "not", "yet"), Bytes: 1}}, statfs); err != nil {
		t.Fatal(err)
	}
	if asked != parent {
		t.Errorf("CheckSpace of a missing dir asked statfs(%q), want its existing parent %q", asked, parent)
	}
}

func TestSpaceNeeds(t *testing.T) {
	dir := t.TempDir()
	kiln := filepath.Join(dir, "kiln")
	if err := os.WriteFile(kiln, make([]byte, 20<<20), 0o755); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	os.Mkdir(cache, 0o755)
	os.WriteFile(filepath.Join(cache, "ipxe_1_all.deb"), nil, 0o644)
	s := Spec{Kiln: kiln, CacheDir: cache, Lock: debs.Lock{Pins: []debs.Pin{{Name: "ipxe"}, {Name: "linux-image-6.1.0-1-amd64"}}}}
	got := map[string]uint64{}
	for _, n := range SpaceNeeds(s, "o/kiln.img", "q/kiln.qcow2", "w", false) {
		got[n.Flag] = n.Bytes >> 20
	}
	// root = 20 MiB kiln + 48 MiB; ESP = 2×32 MiB; cache only lacks the kernel.
	want := map[string]uint64{"--out": 64 + 2*68, "--qcow2": 64 + 2*68, "TMPDIR": 40 + 96 + 68, "--cache": 96}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("SpaceNeeds() in MiB = %v, want %v", got, want)
	}

	// The vetting live image: kernel 16 + agent 10 + modules 16 = 42 MiB,
	// in the root and once more in vet/ next to the image.
	agent := filepath.Join(dir, "kiln-agent")
	if err := os.WriteFile(agent, make([]byte, 10<<20), 0o755); err != nil {
		t.Fatal(err)
	}
	s.Agent = agent
	got = map[string]uint64{}
	for _, n := range SpaceNeeds(s, "o/kiln.img", "q/kiln.qcow2", "w", false) {
		got[n.Flag] = n.Bytes >> 20
	}
	want = map[string]uint64{"--out": 64 + 2*110 + 42, "--qcow2": 64 + 2*110, "TMPDIR": 40 + 96 + 84 + 110, "--cache": 96}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("SpaceNeeds() with an agent in MiB = %v, want %v", got, want)
	}
}

func TestNoSpace(t *testing.T) {
	o, w := t.TempDir(), t.TempDir()
	needs := []SpaceNeed{{Dir: o, Flag: "--out"}, {Dir: w, Flag: "TMPDIR"}}
	statfs := fakeStatfs(map[string]FS{o: {"o", 5 << 20}, w: {"w", 1 << 20}}, 0)
	other := errors.New("boom")
	if got := NoSpace(other, needs, statfs); got != other {
		t.Errorf("NoSpace(boom) = %v, want it unchanged", got)
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"path named", fmt.Errorf("writing %s/kiln.img.tmp: %w", o, syscall.ENOSPC),
			o + " filled up during the build (writing " + o + "/kiln.img.tmp: no space left on device); 5 MiB free now. Check with: df -h " + o},
		{"tool stderr, least free blamed", errors.New("running mksquashfs: exit status 1: Write failed because No space left on device"), w + " filled up during the build"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := NoSpace(tc.err, needs, statfs)
			if !errors.Is(got, ErrNoSpace) || !strings.Contains(got.Error(), tc.want) {
				t.Errorf("NoSpace(%v) = %v, want ErrNoSpace containing %q", tc.err, got, tc.want)
			}
		})
	}
}
