// Package kmod reads kernel modules' .modinfo sections and computes module
// closures, writing modules.dep, modules.alias and modules.softdep in depmod's
// format — Debian's kernel package ships no modules.dep, and running depmod at
// build time would tie the build to the host's kmod.
package kmod

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
)

// ErrUnknownModule marks a requested module that neither exists nor is built in.
var ErrUnknownModule = errors.New("no such kernel module")

// Info is what a module's .modinfo says about it.
type Info struct {
	Name    string   // "name=" (normalized: '-' becomes '_')
	Depends []string // "depends=", normalized names, in file order
	Aliases []string // "alias=" patterns, in file order
	Softdep []string // "softdep=" values, e.g. "pre: crypto-crc32c"
}

// ParseModinfo reads the .modinfo section of a module's ELF image.
func ParseModinfo(r io.ReaderAt) (Info, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return Info{}, fmt.Errorf("reading module ELF: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return Info{}, errors.New("module has no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return Info{}, fmt.Errorf("reading .modinfo: %w", err)
	}
	return parseModinfoSection(data), nil
}

// parseModinfoSection parses NUL-separated key=value strings.
func parseModinfoSection(data []byte) Info {
	var info Info
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			info.Name = Normalize(v)
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					info.Depends = append(info.Depends, Normalize(d))
				}
			}
		case "alias":
			info.Aliases = append(info.Aliases, v)
		case "softdep":
			info.Softdep = append(info.Softdep, v)
		}
	}
	return info
}

// Normalize returns the kernel's canonical module name: '-' becomes '_'.
func Normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// Module is a module file in a kernel tree.
type Module struct {
	Path string // relative to /lib/modules/<release>, e.g. "kernel/fs/ext4/ext4.ko"
	Info
}

// NameFromPath returns the normalized module name of a .ko path.
func NameFromPath(p string) string { return Normalize(strings.TrimSuffix(path.Base(p), ".ko")) }

// Tree is every module of one kernel release plus its built-in module list.
type Tree struct {
	byName  map[string]*Module
	builtin map[string]bool
}

// NewTree indexes modules; builtin holds the lines of modules.builtin
// ("kernel/…/foo.ko"). A module whose Info has no name gets one from its path.
func NewTree(mods []Module, builtin []string) *Tree {
	t := &Tree{byName: map[string]*Module{}, builtin: map[string]bool{}}
	for i := range mods {
		m := mods[i]
		if m.Name == "" {
			m.Name = NameFromPath(m.Path)
		}
		t.byName[m.Name] = &m
	}
	for _, b := range builtin {
		if b = strings.TrimSpace(b); b != "" {
			t.builtin[NameFromPath(b)] = true
		}
	}
	return t
}

// Builtin reports whether a module is compiled into the kernel.
func (t *Tree) Builtin(name string) bool { return t.builtin[Normalize(name)] }

// Lookup returns a module by name (either spelling).
func (t *Tree) Lookup(name string) (*Module, bool) {
	m, ok := t.byName[Normalize(name)]
	return m, ok
}

// resolve returns the modules a name stands for: the module of that name, or else
// every module with a matching alias (e.g. "crypto-crc32c"). Sorted by name.
func (t *Tree) resolve(name string) []*Module {
	if m, ok := t.Lookup(name); ok {
		return []*Module{m}
	}
	var out []*Module
	for _, m := range t.byName {
		for _, a := range m.Aliases {
			if ok, _ := path.Match(a, name); ok || a == name {
				out = append(out, m)
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b *Module) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Closure returns the required and optional modules with every dependency
// (depends= and the targets of softdep=), sorted by path. A required name that is
// neither a module, an alias nor built in is an error; missing optional names and
// built-in names are skipped and reported in skipped.
func (t *Tree) Closure(required, optional []string) (mods []*Module, skipped []string, err error) {
	seen := map[string]bool{}
	var visit func(m *Module) error
	visit = func(m *Module) error {
		if seen[m.Name] {
			return nil
		}
		seen[m.Name] = true
		mods = append(mods, m)
		for _, d := range m.Depends {
			dm, ok := t.Lookup(d)
			if !ok {
				return fmt.Errorf("module %s depends on %s, which is not in the kernel package: %w", m.Name, d, ErrUnknownModule)
			}
			if err := visit(dm); err != nil {
				return err
			}
		}
		for _, name := range softdepTargets(m.Softdep) {
			for _, sm := range t.resolve(name) {
				if err := visit(sm); err != nil {
					return err
				}
			}
		}
		return nil
	}
	add := func(name string, must bool) error {
		ms := t.resolve(name)
		if len(ms) == 0 {
			if t.Builtin(name) || !must {
				skipped = append(skipped, name)
				return nil
			}
			return fmt.Errorf("module %q: %w (not a module, alias or built-in of this kernel)", name, ErrUnknownModule)
		}
		for _, m := range ms {
			if err := visit(m); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range required {
		if err := add(n, true); err != nil {
			return nil, nil, err
		}
	}
	for _, n := range optional {
		if err := add(n, false); err != nil {
			return nil, nil, err
		}
	}
	slices.SortFunc(mods, func(a, b *Module) int { return strings.Compare(a.Path, b.Path) })
	return mods, skipped, nil
}

// softdepTargets returns the module names in softdep values ("pre: a b post: c").
func softdepTargets(values []string) []string {
	var out []string
	for _, v := range values {
		for _, f := range strings.Fields(v) {
			if f == "pre:" || f == "post:" {
				continue
			}
			out = append(out, f)
		}
	}
	return out
}
