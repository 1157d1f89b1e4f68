package guest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"kiln.dev/kiln/image/debs"
	"kiln.dev/kiln/image/initramfs"
	"kiln.dev/kiln/image/kmod"
	"kiln.dev/kiln/internal/atomicfile"
	"kiln.dev/kiln/qemu/guest/internal/job"
)

// errUnavailable marks a missing requirement of the guest tier (QEMU, the
// kernel package, the Go toolchain); Enter skips on it.
var errUnavailable = errors.New("guest tier unavailable")

// repoRoot returns the kiln module's root above dir.
func repoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module kiln.dev/kiln\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no kiln go.mod above %s: run the test inside the kiln module", dir)
		}
	}
}

// kernelStore is one kernel package unpacked into the cache once: its image
// (bzImage, and the uncompressed vmlinux for a PVH boot), the whole module
// tree at lib/modules/<release> with modules.dep/alias/softdep from kiln's Go
// depmod and kmod's binary indexes, and an index of every module's .modinfo.
// Guests read the module tree through the 9p root, so every module of the
// kernel is available on demand and the initramfs stays small.
type kernelStore struct {
	dir     string // <cache>/kernel<format>-<sha256 of the .deb, 16 hex>
	release string
	tree    *kmod.Tree
}

// storeFormat changes with the store's layout, so an older store is not read.
const storeFormat = 2

// storeIndex is the store's index.json.
type storeIndex struct {
	Release string        `json:"release"`
	Modules []kmod.Module `json:"modules"`
	Builtin []string      `json:"builtin"`
}

// kernel returns the image to boot: the PVH vmlinux when there is one (no
// decompression under TCG: seconds faster), else the bzImage.
func (k *kernelStore) kernel() string {
	if p := filepath.Join(k.dir, "vmlinux"); exists(p) {
		return p
	}
	return filepath.Join(k.dir, "vmlinuz")
}

// modDir is the store's /lib/modules/<release>.
func (k *kernelStore) modDir() string { return filepath.Join(k.dir, "lib", "modules", k.release) }

// hostTool finds a kmod program (depmod, modprobe) even when PATH lacks
// the sbin directories.
func hostTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(d, name); exists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s not found: apt-get install kmod", errUnavailable, name)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// openStore returns the store of the pinned kernel package (image/packages.lock),
// unpacking it on first use from $KILN_KERNEL_DEB or out/cache/debs, where
// it is fetched from Debian's archive when missing. A warm start reads
// neither the package nor its hash.
func openStore(ctx context.Context, root, cache string) (*kernelStore, error) {
	lock, err := debs.ReadLock(filepath.Join(root, "image", "packages.lock"))
	if err != nil {
		return nil, err
	}
	pin, err := lock.Kernel()
	if err != nil {
		return nil, err
	}
	release, sum, deb := pin.KernelRelease(), pin.SHA256, os.Getenv("KILN_KERNEL_DEB")
	if deb != "" {
		if sum, err = fileHash(deb); err != nil {
			return nil, fmt.Errorf("KILN_KERNEL_DEB: %w", err)
		}
	}
	dir := filepath.Join(cache, fmt.Sprintf("kernel%d-%s", storeFormat, sum[:16]))
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		unlock, err := lockDir(cache)
		if err != nil {
			return nil, err
		}
		defer unlock()
		if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
			if deb == "" {
				deb, err = debs.Cache{Dir: filepath.Join(root, "out", "cache", "debs")}.Fetch(ctx, pin)
				if err != nil {
					return nil, fmt.Errorf("%w: kernel package %s %s: %v", errUnavailable, pin.Name, pin.Version, err)
				}
			}
			if err := unpackKernel(ctx, deb, release, dir); err != nil {
				return nil, err
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return nil, fmt.Errorf("reading kernel store index: %w", err)
	}
	var ix storeIndex
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("decoding %s/index.json: %w (delete the directory to rebuild it)", dir, err)
	}
	if ix.Release != release {
		return nil, fmt.Errorf("kernel store %s holds release %s, want %s: delete it", dir, ix.Release, release)
	}
	return &kernelStore{dir: dir, release: release, tree: kmod.NewTree(ix.Modules, ix.Builtin)}, nil
}

// unpackKernel writes the kernel image and every module file of deb into
// dir, with index.json written last (its presence marks a complete store).
func unpackKernel(ctx context.Context, deb, release, dir string) error {
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	modDir := filepath.Join(tmp, "lib", "modules", release)
	if err := os.MkdirAll(modDir, 0o755); err != nil {
		return fmt.Errorf("creating kernel store: %w", err)
	}
	modPrefix := "lib/modules/" + release + "/"
	ix := storeIndex{Release: release}
	haveKernel := false
	err := debs.WalkDeb(ctx, deb, func(h *tar.Header, r io.Reader) error {
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		var dst string
		switch rel, isMod := strings.CutPrefix(h.Name, modPrefix); {
		case h.Name == "boot/vmlinuz-"+release:
			dst, haveKernel = filepath.Join(tmp, "vmlinuz"), true
		case isMod:
			dst = filepath.Join(modDir, filepath.FromSlash(rel))
		default:
			return nil
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("reading %s from %s: %w", h.Name, deb, err)
		}
		if rel, ok := strings.CutPrefix(h.Name, modPrefix); ok && strings.HasSuffix(rel, ".ko") {
			info, err := kmod.ParseModinfo(bytes.NewReader(data))
			if err != nil {
				return fmt.Errorf("reading %s: %w", h.Name, err)
			}
			ix.Modules = append(ix.Modules, kmod.Module{Path: rel, Info: info})
		}
		if h.Name == modPrefix+"modules.builtin" {
			ix.Builtin = strings.Split(string(data), "\n")
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		return fmt.Errorf("unpacking the kernel package: %w", err)
	}
	if !haveKernel || len(ix.Modules) == 0 {
		return fmt.Errorf("kernel package %s has no boot/vmlinuz-%s or no modules: is the lock's kernel pin right? run make lock", deb, release)
	}
	if err := writeIndexes(tmp, release, ix.Modules); err != nil {
		return err
	}
	if err := writeVmlinux(ctx, filepath.Join(tmp, "vmlinuz"), filepath.Join(tmp, "vmlinux")); err != nil {
		return err
	}
	b, err := json.Marshal(ix)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "index.json"), b, 0o644); err != nil {
		return err
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("finishing kernel store: %w", err)
	}
	return nil
}

// writeIndexes writes the module indexes of the tree at
// base/lib/modules/<release>: kmod's binary ones by the host's depmod (the
// guest's modprobe, request_module and iscsid's libkmod read them), then
// modules.dep/alias/softdep from kiln's Go depmod in place of depmod's text
// ones (kiln's loader reads them; image's TestModulesMatchDepmod keeps the
// two equal).
func writeIndexes(base, release string, mods []kmod.Module) error {
	dir := filepath.Join(base, "lib", "modules", release)
	depmod, err := hostTool("depmod")
	if err != nil {
		return err
	}
	if out, err := exec.Command(depmod, "-b", base, release).CombinedOutput(); err != nil {
		return fmt.Errorf("running depmod over the guest's module tree: %v: %s", err, out)
	}
	ptrs := make([]*kmod.Module, len(mods))
	for i := range mods {
		ptrs[i] = &mods[i]
	}
	files, err := kmod.Files(ptrs)
	if err != nil {
		return fmt.Errorf("indexing the guest's modules: %w", err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// closure returns the named modules with all their dependencies; an unknown
// name is an error naming Options.Modules.
func (k *kernelStore) closure(names []string) ([]*kmod.Module, error) {
	mods, _, err := k.tree.Closure(names, nil)
	if err != nil {
		return nil, fmt.Errorf("Options.Modules: %w", err)
	}
	return mods, nil
}

// initramfsFormat changes when the layout of the guest initramfs changes, so
// older cached archives are not reused.
const initramfsFormat = "kiln-guest-initramfs-2"

// initramfs returns a cached newc archive (uncompressed: under TCG unpacking
// beats decompressing) holding the guest init as /init and the closure of
// job.InitramfsModules under /lib/modules/<release> with kiln's Go depmod
// files; everything else comes from the store's tree over 9p.
func (k *kernelStore) initramfs(initBin string) (string, error) {
	mods, err := k.closure(job.InitramfsModules)
	if err != nil {
		return "", err
	}
	init, err := os.ReadFile(initBin)
	if err != nil {
		return "", fmt.Errorf("reading the guest init: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%x\n", initramfsFormat, k.release, sha256.Sum256(init))
	for _, m := range mods {
		fmt.Fprintln(h, m.Path)
	}
	out := filepath.Join(k.dir, "initrd-"+hex.EncodeToString(h.Sum(nil))[:16]+".cpio")
	if exists(out) {
		now := time.Now()
		os.Chtimes(out, now, now) // pruneInitrds keeps what is in use
		return out, nil
	}
	files, err := kmod.Files(mods)
	if err != nil {
		return "", err
	}
	for _, m := range mods {
		b, err := os.ReadFile(filepath.Join(k.modDir(), filepath.FromSlash(m.Path)))
		if err != nil {
			return "", fmt.Errorf("reading module %s from the kernel store: %w", m.Name, err)
		}
		files[m.Path] = b
	}
	members := []initramfs.File{{Path: "init", Mode: 0o755, Data: init}}
	base := "lib/modules/" + k.release + "/"
	for _, name := range slices.Sorted(maps.Keys(files)) {
		members = append(members, initramfs.File{Path: base + name, Mode: 0o644, Data: files[name]})
	}
	var buf bytes.Buffer
	if err := initramfs.WriteCPIO(&buf, members); err != nil {
		return "", err
	}
	if err := atomicfile.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("writing guest initramfs: %w", err)
	}
	pruneInitrds(k.dir, out)
	return out, nil
}

// pruneInitrds removes cached initramfs archives other than keep that were
// not used for a day (older guest inits or module sets).
func pruneInitrds(dir, keep string) {
	old, _ := filepath.Glob(filepath.Join(dir, "initrd-*.cpio"))
	for _, p := range old {
		if fi, err := os.Stat(p); err == nil && p != keep && time.Since(fi.ModTime()) > 24*time.Hour {
			os.Remove(p)
		}
	}
}

// lockDir takes an exclusive flock on dir/.lock; concurrent test binaries
// build the cache one at a time.
func lockDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating guest cache: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking guest cache: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking guest cache: %w", err)
	}
	return func() { f.Close() }, nil
}

func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
