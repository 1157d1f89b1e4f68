// Package debs owns the Debian packages an image is built from: the lock file that
// pins each one by name, version and SHA-256, refreshing the pins from the current
// archive candidates, fetching pinned .debs into a build cache with apt-get, and
// reading a .deb's files as a tar stream.
package debs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"kiln.dev/kiln/image/hosttool"
)

// KernelMeta is the metapackage whose dependency names the current kernel package.
const KernelMeta = "linux-image-amd64"

// Wanted returns the packages an image needs besides the kernel (which is
// resolved from KernelMeta at lock time).
// grub-pc-bin and grub-common give legacy BIOS boot: GRUB's i386-pc modules
// and boot sectors, and the grub-mkimage that assembles its core image.
func Wanted() []string { return []string{"systemd-boot-efi", "ipxe", "grub-pc-bin", "grub-common"} }

// ErrHashMismatch marks a .deb whose SHA-256 differs from its pin.
var ErrHashMismatch = errors.New("package hash does not match the lock file")

// ErrGone marks a pinned version the archive no longer offers.
var ErrGone = errors.New("pinned package version is no longer in the archive")

// Pin is one locked package.
type Pin struct {
	Name    string
	Version string
	SHA256  string // hex
}

// Lock is the parsed lock file.
type Lock struct {
	Pins []Pin // sorted by name
}

// Get returns the pin of a package.
func (l Lock) Get(name string) (Pin, bool) {
	for _, p := range l.Pins {
		if p.Name == name {
			return p, true
		}
	}
	return Pin{}, false
}

// Kernel returns the pin of the kernel image package (linux-image-<release>).
func (l Lock) Kernel() (Pin, error) {
	for _, p := range l.Pins {
		if strings.HasPrefix(p.Name, "linux-image-") && p.Name != KernelMeta {
			return p, nil
		}
	}
	return Pin{}, errors.New("lock file pins no linux-image-<release> package: run make lock")
}

// KernelRelease returns the kernel release ("6.1.0-56-amd64") of a kernel pin.
func (p Pin) KernelRelease() string { return strings.TrimPrefix(p.Name, "linux-image-") }

const lockHeader = "# kiln package lock: <package> <version> <sha256 of the .deb>\n" +
	"# Refresh with `make lock` (kiln image lock); the image build fetches exactly these.\n"

// Marshal renders the lock file.
func (l Lock) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(lockHeader)
	pins := slices.Clone(l.Pins)
	slices.SortFunc(pins, func(a, b Pin) int { return strings.Compare(a.Name, b.Name) })
	for _, p := range pins {
		fmt.Fprintf(&b, "%s %s %s\n", p.Name, p.Version, p.SHA256)
	}
	return b.Bytes()
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	versionRE = regexp.MustCompile(`^[0-9A-Za-z.+~:-]+$`)
	sha256RE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ParseLock parses a lock file; name is used in error messages.
func ParseLock(name string, data []byte) (Lock, error) {
	var l Lock
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 || !nameRE.MatchString(f[0]) || !versionRE.MatchString(f[1]) || !sha256RE.MatchString(f[2]) {
			return Lock{}, fmt.Errorf("%s:%d: want \"<package> <version> <sha256>\", got %q: fix the line or run make lock", name, n, line)
		}
		if _, dup := l.Get(f[0]); dup {
			return Lock{}, fmt.Errorf("%s:%d: package %s is pinned twice", name, n, f[0])
		}
		l.Pins = append(l.Pins, Pin{Name: f[0], Version: f[1], SHA256: f[2]})
	}
	if err := sc.Err(); err != nil {
		return Lock{}, fmt.Errorf("reading %s: %w", name, err)
	}
	slices.SortFunc(l.Pins, func(a, b Pin) int { return strings.Compare(a.Name, b.Name) })
	return l, nil
}

// ReadLock reads and parses a lock file.
func ReadLock(path string) (Lock, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Lock{}, fmt.Errorf("reading package lock: %w (create it with make lock)", err)
	}
	return ParseLock(path, data)
}

// Cache fetches pinned packages into a directory with apt-get and verifies them.
type Cache struct {
	Dir string // where .debs are kept between builds
}

// debFileName is apt's file name for a package version (':' is escaped as %3a).
func debFileName(p Pin, arch string) string {
	return p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a") + "_" + arch + ".deb"
}

// cached returns the path of the pinned .deb in the cache, or "" if absent.
func (c Cache) cached(p Pin) string {
	for _, arch := range []string{"amd64", "all"} {
		path := filepath.Join(c.Dir, debFileName(p, arch))
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	return ""
}

// Fetch returns the path of the pinned package's .deb in the cache, downloading it
// with "apt-get download name=version" when absent, and verifying its SHA-256.
func (c Cache) Fetch(ctx context.Context, p Pin) (string, error) {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return "", fmt.Errorf("creating package cache: %w", err)
	}
	path := c.cached(p)
	if path == "" {
		if _, err := hosttool.AptGet.Run(ctx, c.Dir, "download", p.Name+"="+p.Version); err != nil {
			if errors.Is(err, hosttool.ErrMissing) {
				return "", err
			}
			var re *hosttool.RunError
			if errors.As(err, &re) && gone(re.Stderr) {
				return "", fmt.Errorf("fetching %s %s: %w: run make lock to pin the current version (apt-get said: %s)",
					p.Name, p.Version, ErrGone, strings.TrimSpace(re.Stderr))
			}
			return "", fmt.Errorf("fetching %s %s: %w (if the package lists are empty, run apt-get update)", p.Name, p.Version, err)
		}
		if path = c.cached(p); path == "" {
			return "", fmt.Errorf("fetching %s %s: apt-get download left no %s in %s", p.Name, p.Version, debFileName(p, "amd64"), c.Dir)
		}
	}
	sum, err := fileSHA256(path)
	if err != nil {
		return "", err
	}
	if sum != p.SHA256 {
		return "", fmt.Errorf("verifying %s %s (%s): %w: expected sha256 %s, actual %s; delete the file to re-fetch, or run make lock if the archive really changed",
			p.Name, p.Version, path, ErrHashMismatch, p.SHA256, sum)
	}
	return path, nil
}

// gone reports whether apt-get's standard error says the version or package is unknown.
func gone(stderr string) bool {
	for _, s := range []string{"was not found", "Unable to locate package", "has no installation candidate", "Can't select"} {
		if strings.Contains(stderr, s) {
			return true
		}
	}
	return false
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hashing package: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Refresh resolves the current kernel package and downloads the current candidates
// of it and of Wanted into the cache, returning a lock pinning them.
func (c Cache) Refresh(ctx context.Context) (Lock, error) {
	kernel, err := CurrentKernel(ctx)
	if err != nil {
		return Lock{}, err
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return Lock{}, fmt.Errorf("creating package cache: %w", err)
	}
	tmp, err := os.MkdirTemp(c.Dir, "lock-")
	if err != nil {
		return Lock{}, fmt.Errorf("creating download dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	names := append([]string{kernel}, Wanted()...)
	if _, err := hosttool.AptGet.Run(ctx, tmp, append([]string{"download"}, names...)...); err != nil {
		return Lock{}, fmt.Errorf("downloading current packages (run apt-get update first if the lists are empty): %w", err)
	}
	var l Lock
	for _, name := range names {
		matches, _ := filepath.Glob(filepath.Join(tmp, name+"_*.deb"))
		if len(matches) != 1 {
			return Lock{}, fmt.Errorf("apt-get download %s left %d files, want 1", name, len(matches))
		}
		out, err := hosttool.DpkgDeb.Run(ctx, "", "--field", matches[0], "Version")
		if err != nil {
			return Lock{}, fmt.Errorf("reading version of %s: %w", matches[0], err)
		}
		sum, err := fileSHA256(matches[0])
		if err != nil {
			return Lock{}, err
		}
		p := Pin{Name: name, Version: strings.TrimSpace(string(out)), SHA256: sum}
		// Keep the download: the next build finds it in the cache.
		if err := os.Rename(matches[0], filepath.Join(c.Dir, filepath.Base(matches[0]))); err != nil {
			return Lock{}, fmt.Errorf("moving %s into the cache: %w", name, err)
		}
		l.Pins = append(l.Pins, p)
	}
	slices.SortFunc(l.Pins, func(a, b Pin) int { return strings.Compare(a.Name, b.Name) })
	return l, nil
}

// CurrentKernel returns the kernel package the metapackage currently depends on.
func CurrentKernel(ctx context.Context) (string, error) {
	out, err := hosttool.AptCache.Run(ctx, "", "depends", KernelMeta)
	if err != nil {
		return "", fmt.Errorf("resolving %s (run apt-get update first if the lists are empty): %w", KernelMeta, err)
	}
	return parseKernelDepends(out)
}

var kernelDepRE = regexp.MustCompile(`(?m)^\s*Depends:\s*(linux-image-[0-9][^\s]*-amd64)\s*$`)

func parseKernelDepends(out []byte) (string, error) {
	m := kernelDepRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("apt-cache depends %s names no linux-image-<release>-amd64 package (run apt-get update)", KernelMeta)
	}
	return string(m[1]), nil
}

// WalkDeb streams the data archive of a .deb (dpkg-deb --fsys-tarfile) and calls fn
// for every member; names are cleaned and have no leading "./".
func WalkDeb(ctx context.Context, debPath string, fn func(h *tar.Header, r io.Reader) error) error {
	out, wait, err := hosttool.DpkgDeb.Pipe(ctx, "--fsys-tarfile", debPath)
	if err != nil {
		return err
	}
	tr := tar.NewReader(out)
	var walkErr error
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			walkErr = fmt.Errorf("reading data of %s: %w", debPath, err)
			break
		}
		h.Name = strings.TrimPrefix(filepath.Clean("/"+h.Name), "/")
		if err := fn(h, tr); err != nil {
			walkErr = err
			break
		}
	}
	if walkErr != nil {
		io.Copy(io.Discard, out)
		wait()
		return walkErr
	}
	if err := wait(); err != nil {
		return fmt.Errorf("extracting %s: %w", debPath, err)
	}
	return nil
}

// Extract returns the contents of the regular files of a .deb for which keep
// returns true, keyed by path (no leading slash).
func Extract(ctx context.Context, debPath string, keep func(name string) bool) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := WalkDeb(ctx, debPath, func(h *tar.Header, r io.Reader) error {
		if h.Typeflag != tar.TypeReg || !keep(h.Name) {
			return nil
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("reading %s from %s: %w", h.Name, debPath, err)
		}
		files[h.Name] = data
		return nil
	})
	return files, err
}
