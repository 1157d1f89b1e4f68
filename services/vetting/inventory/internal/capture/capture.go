// Package capture records what inventory.Collect reads on a machine — the
// sysfs and procfs files, directories and symlinks, and the answers of NVMe
// and ATA commands — and packs exactly that into a tar that unpacks into a
// fixture tree (root/…) and its probe answers (probe/<device>.<kind>), the
// layout inventory's golden tests read.
package capture

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"kiln.dev/kiln/services/vetting/inventory"
)

// Recorder wraps an FS and remembers every path read successfully.
type Recorder struct {
	inventory.FS
	mu sync.Mutex
	// reads, dirs and links are guarded by mu.
	reads, dirs, links map[string]bool
}

// NewRecorder wraps inner.
func NewRecorder(inner inventory.FS) *Recorder {
	return &Recorder{FS: inner, reads: map[string]bool{}, dirs: map[string]bool{}, links: map[string]bool{}}
}

func (r *Recorder) note(m map[string]bool, name string) {
	r.mu.Lock()
	m[name] = true
	r.mu.Unlock()
}

// ReadFile implements inventory.FS.
func (r *Recorder) ReadFile(name string) ([]byte, error) {
	b, err := r.FS.ReadFile(name)
	if err == nil {
		r.note(r.reads, name)
	}
	return b, err
}

// ReadDir implements inventory.FS.
func (r *Recorder) ReadDir(name string) ([]fs.DirEntry, error) {
	ents, err := r.FS.ReadDir(name)
	if err == nil {
		r.note(r.dirs, name)
	}
	return ents, err
}

// Readlink implements inventory.FS.
func (r *Recorder) Readlink(name string) (string, error) {
	t, err := r.FS.Readlink(name)
	if err == nil {
		r.note(r.links, name)
	}
	return t, err
}

// Probes wraps real probers and keeps their answers by file name
// ("nvme0.nvme-identify", "sda.ata-smart-status").
type Probes struct {
	NVMe inventory.NVMeProber
	ATA  inventory.ATAProber
	mu   sync.Mutex
	// answers is guarded by mu.
	answers map[string][]byte
}

func (p *Probes) keep(name string, b []byte, err error) ([]byte, error) {
	if err == nil {
		p.mu.Lock()
		if p.answers == nil {
			p.answers = map[string][]byte{}
		}
		p.answers[name] = append([]byte(nil), b...)
		p.mu.Unlock()
	}
	return b, err
}

// NVMeIdentify implements inventory.NVMeProber.
func (p *Probes) NVMeIdentify(c string) ([]byte, error) {
	b, err := p.NVMe.NVMeIdentify(c)
	return p.keep(c+".nvme-identify", b, err)
}

// NVMeSMARTLog implements inventory.NVMeProber.
func (p *Probes) NVMeSMARTLog(c string) ([]byte, error) {
	b, err := p.NVMe.NVMeSMARTLog(c)
	return p.keep(c+".nvme-smart", b, err)
}

// ATAIdentify implements inventory.ATAProber.
func (p *Probes) ATAIdentify(d string) ([]byte, error) {
	b, err := p.ATA.ATAIdentify(d)
	return p.keep(d+".ata-identify", b, err)
}

// ATASMARTData implements inventory.ATAProber.
func (p *Probes) ATASMARTData(d string) ([]byte, error) {
	b, err := p.ATA.ATASMARTData(d)
	return p.keep(d+".ata-smart", b, err)
}

// ATASMARTStatus implements inventory.ATAProber.
func (p *Probes) ATASMARTStatus(d string) (bool, error) {
	ok, err := p.ATA.ATASMARTStatus(d)
	s := "failed\n"
	if ok {
		s = "passed\n"
	}
	_, _ = p.keep(d+".ata-smart-status", []byte(s), err)
	return ok, err
}

// Machine collects the inventory of the machine at root with the given
// probers (nil: none) and writes the capture as a tar to w.
func Machine(ctx context.Context, w io.Writer, root string, nvme inventory.NVMeProber, ata inventory.ATAProber) (inventory.Inventory, error) {
	rec := NewRecorder(inventory.DirFS(root))
	cfg := inventory.Config{FS: rec}
	var probes *Probes
	if nvme != nil || ata != nil {
		probes = &Probes{NVMe: nvme, ATA: ata}
		if nvme != nil {
			cfg.NVMe = probes
		}
		if ata != nil {
			cfg.ATA = probes
		}
	}
	inv, err := inventory.Collect(ctx, cfg)
	if err != nil {
		return inv, err
	}
	t := &tarWriter{tw: tar.NewWriter(w), src: root, done: map[string]bool{}}
	if err := t.recorded(rec); err != nil {
		return inv, err
	}
	if probes != nil {
		names := make([]string, 0, len(probes.answers))
		for n := range probes.answers {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if err := t.file("probe/"+n, probes.answers[n]); err != nil {
				return inv, err
			}
		}
	}
	return inv, t.tw.Close()
}

// tarWriter replicates paths of src into the tar under root/, keeping
// symlinks as symlinks so relative sysfs links resolve the same way.
type tarWriter struct {
	tw   *tar.Writer
	src  string
	done map[string]bool
}

func (t *tarWriter) header(h *tar.Header) error {
	if t.done[h.Name] {
		return nil
	}
	t.done[h.Name] = true
	h.Mode = 0o644
	if h.Typeflag == tar.TypeDir {
		h.Mode = 0o755
	}
	return t.tw.WriteHeader(h)
}

func (t *tarWriter) dir(rel string) error {
	if rel == "" || rel == "." {
		return nil
	}
	if err := t.dir(path.Dir(rel)); err != nil {
		return err
	}
	return t.header(&tar.Header{Name: "root/" + rel + "/", Typeflag: tar.TypeDir})
}

func (t *tarWriter) file(name string, b []byte) error {
	if t.done[name] {
		return nil
	}
	t.done[name] = true
	if err := t.tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))}); err != nil {
		return err
	}
	_, err := t.tw.Write(b)
	return err
}

// ensure makes every component of the logical path rel exist in the tar,
// recreating links it passes through, and returns the canonical path.
func (t *tarWriter) ensure(rel string) (string, error) {
	parts := strings.Split(rel, "/")
	resolved := ""
	for hops := 0; len(parts) > 0 && hops < 40; {
		p := parts[0]
		parts = parts[1:]
		switch p {
		case "", ".":
			continue
		case "..":
			resolved = path.Dir(resolved)
			if resolved == "." {
				resolved = ""
			}
			continue
		}
		next := path.Join(resolved, p)
		fi, err := os.Lstat(filepath.Join(t.src, next))
		if err != nil {
			return next, nil
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			if fi.IsDir() {
				if err := t.dir(next); err != nil {
					return "", err
				}
			}
			continue
		}
		target, err := os.Readlink(filepath.Join(t.src, next))
		if err != nil {
			return "", err
		}
		if err := t.dir(path.Dir(next)); err != nil {
			return "", err
		}
		if err := t.header(&tar.Header{Name: "root/" + next, Typeflag: tar.TypeSymlink, Linkname: target}); err != nil {
			return "", err
		}
		hops++
		if strings.HasPrefix(target, "/") {
			resolved = ""
		}
		parts = append(strings.Split(target, "/"), parts...)
	}
	return resolved, nil
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (t *tarWriter) recorded(rec *Recorder) error {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, name := range sorted(rec.links) {
		if _, err := t.ensure(name); err != nil {
			return err
		}
	}
	for _, name := range sorted(rec.dirs) {
		canon, err := t.ensure(name)
		if err != nil {
			return err
		}
		ents, err := os.ReadDir(filepath.Join(t.src, canon))
		if err != nil {
			return fmt.Errorf("listing %s: %w", canon, err)
		}
		for _, e := range ents {
			switch {
			case e.Type()&fs.ModeSymlink != 0:
				_, err = t.ensure(path.Join(name, e.Name()))
			case e.IsDir():
				err = t.dir(path.Join(canon, e.Name()))
			}
			if err != nil {
				return err
			}
		}
	}
	for _, name := range sorted(rec.reads) {
		b, err := os.ReadFile(filepath.Join(t.src, name))
		if err != nil {
			return fmt.Errorf("reading %s again: %w", name, err)
		}
		canon, err := t.ensure(name)
		if err != nil {
			return err
		}
		if err := t.dir(path.Dir(canon)); err != nil {
			return err
		}
		if err := t.file("root/"+canon, b); err != nil {
			return err
		}
	}
	return nil
}

// Unpack writes a capture tar into dir (as dir/root/… and dir/probe/…),
// replacing what was there. Empty directories get a .keep file so git keeps
// them.
func Unpack(r io.Reader, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the capture: %w", err)
		}
		name := path.Clean(h.Name)
		if strings.HasPrefix(name, "..") || path.IsAbs(name) {
			return fmt.Errorf("capture entry %q leaves the directory", h.Name)
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			var b []byte
			if b, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, b, 0o644)
			}
		}
		if err != nil {
			return err
		}
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		ents, err := os.ReadDir(p)
		if err == nil && len(ents) == 0 {
			err = os.WriteFile(filepath.Join(p, ".keep"), nil, 0o644)
		}
		return err
	})
}
