// Package kmod loads Linux kernel modules the way modprobe does, without kmod's
// binary indexes: it reads depmod's text files (modules.dep, modules.alias and,
// when present, modules.builtin), resolves a module name or a device alias to
// modules, orders their dependencies and inserts each with finit_module(2),
// skipping what /sys/module already shows as loaded. Stage 1, /sbin/modprobe
// and PID 1's coldplug all use it.
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Index is the parsed content of one /lib/modules/<release> directory.
type Index struct {
	// paths maps a module name to its file, relative to the module directory.
	paths map[string]string
	// deps maps a module name to the names of the modules it depends on.
	deps map[string][]string
	// aliases in file order; patterns are normalized.
	aliases []alias
	// builtin holds modules compiled into the kernel.
	builtin map[string]bool
}

type alias struct {
	pattern string
	module  string
}

// ErrNotFound is returned when neither a module nor an alias matches a name.
var ErrNotFound = errors.New("module not found")

// ReadIndex reads modules.dep (required), modules.alias and modules.builtin
// (both optional) from a module directory such as /lib/modules/6.1.0-31-amd64.
func ReadIndex(dir string) (*Index, error) {
	ix := &Index{paths: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("reading module index: %w", err)
	}
	defer f.Close()
	if err := ix.parseDep(f); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", f.Name(), err)
	}
	if f, err := os.Open(filepath.Join(dir, "modules.alias")); err == nil {
		defer f.Close()
		if err := ix.parseAlias(f); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", f.Name(), err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading module aliases: %w", err)
	}
	if f, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		defer f.Close()
		if err := ix.parseBuiltin(f); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", f.Name(), err)
		}
	}
	return ix, nil
}

// ParseIndex builds an index from the contents of modules.dep and modules.alias;
// alias may be nil.
func ParseIndex(dep, aliases io.Reader) (*Index, error) {
	ix := &Index{paths: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	if err := ix.parseDep(dep); err != nil {
		return nil, fmt.Errorf("parsing modules.dep: %w", err)
	}
	if aliases != nil {
		if err := ix.parseAlias(aliases); err != nil {
			return nil, fmt.Errorf("parsing modules.alias: %w", err)
		}
	}
	return ix, nil
}

// ModuleName returns the module name of a module file path:
// "kernel/drivers/usb/storage/usb-storage.ko" → "usb_storage".
func ModuleName(file string) string {
	b := path.Base(file)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, ext)
	}
	return normalize(strings.TrimSuffix(b, ".ko"))
}

// normalize maps '-' to '_' outside [] brackets, as kmod does for names and aliases.
func normalize(s string) string {
	if !strings.ContainsRune(s, '-') {
		return s
	}
	b := []byte(s)
	depth := 0
	for i, c := range b {
		switch {
		case c == '[':
			depth++
		case c == ']' && depth > 0:
			depth--
		case c == '-' && depth == 0:
			b[i] = '_'
		}
	}
	return string(b)
}

func (ix *Index) parseDep(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok || file == "" {
			return fmt.Errorf("line %d: %q has no \"module: deps\" form", n, line)
		}
		name := ModuleName(file)
		ix.paths[name] = file
		var deps []string
		for _, d := range strings.Fields(rest) {
			deps = append(deps, ModuleName(d))
		}
		ix.deps[name] = deps
	}
	return sc.Err()
}

func (ix *Index) parseAlias(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "alias" {
			return fmt.Errorf("line %d: %q is not \"alias PATTERN MODULE\"", n, line)
		}
		ix.aliases = append(ix.aliases, alias{pattern: normalize(f[1]), module: normalize(f[2])})
	}
	return sc.Err()
}

func (ix *Index) parseBuiltin(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			ix.builtin[ModuleName(line)] = true
		}
	}
	return sc.Err()
}

// Path returns the file of a module relative to the module directory.
func (ix *Index) Path(module string) (string, bool) {
	p, ok := ix.paths[normalize(module)]
	return p, ok
}

// Builtin reports whether modules.builtin lists the module.
func (ix *Index) Builtin(module string) bool { return ix.builtin[normalize(module)] }

// Resolve returns the modules a name stands for: the module of that name, or
// else every module with an alias pattern matching it, in modules.alias order
// without duplicates. It returns nil when nothing matches.
func (ix *Index) Resolve(name string) []string {
	n := normalize(name)
	if _, ok := ix.paths[n]; ok || ix.builtin[n] {
		return []string{n}
	}
	var mods []string
	seen := map[string]bool{}
	for _, a := range ix.aliases {
		if !seen[a.module] && Match(a.pattern, n) {
			seen[a.module] = true
			mods = append(mods, a.module)
		}
	}
	return mods
}

// LoadOrder returns module and its dependencies, each after everything it
// depends on, ending with module itself.
func (ix *Index) LoadOrder(module string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(m string, chain []string) error
	visit = func(m string, chain []string) error {
		switch state[m] {
		case 1:
			return fmt.Errorf("dependency cycle: %s", strings.Join(append(chain, m), " → "))
		case 2:
			return nil
		}
		if _, ok := ix.paths[m]; !ok {
			if ix.builtin[m] {
				state[m] = 2
				return nil
			}
			if len(chain) == 0 {
				return fmt.Errorf("%s: %w", m, ErrNotFound)
			}
			return fmt.Errorf("%s (needed by %s): %w", m, strings.Join(chain, " → "), ErrNotFound)
		}
		state[m] = 1
		for _, d := range ix.deps[m] {
			if err := visit(d, append(chain, m)); err != nil {
				return err
			}
		}
		state[m] = 2
		order = append(order, m)
		return nil
	}
	if err := visit(normalize(module), nil); err != nil {
		return nil, err
	}
	return order, nil
}

// Modules returns every module in the index, sorted.
func (ix *Index) Modules() []string {
	mods := make([]string, 0, len(ix.paths))
	for m := range ix.paths {
		mods = append(mods, m)
	}
	sort.Strings(mods)
	return mods
}
