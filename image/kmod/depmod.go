package kmod

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Files are the depmod outputs for a set of modules, keyed by file name
// (modules.dep, modules.alias, modules.softdep).
func Files(mods []*Module) (map[string][]byte, error) {
	dep, err := Dep(mods)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		"modules.dep":     dep,
		"modules.alias":   Alias(mods),
		"modules.softdep": Softdep(mods),
	}, nil
}

// Dep renders modules.dep: one line per module, "path: dep dep …", listing every
// transitive dependency so that each module precedes its own dependencies (a
// loader inserts the list from the end). Lines are sorted by path.
func Dep(mods []*Module) ([]byte, error) {
	byName := map[string]*Module{}
	for _, m := range mods {
		byName[m.Name] = m
	}
	sorted := slices.Clone(mods)
	slices.SortFunc(sorted, func(a, b *Module) int { return strings.Compare(a.Path, b.Path) })
	var b bytes.Buffer
	for _, m := range sorted {
		order, err := loadOrder(m, byName)
		if err != nil {
			return nil, err
		}
		b.WriteString(m.Path + ":")
		// order is load order with m last; modules.dep lists users before their deps.
		for i := len(order) - 2; i >= 0; i-- {
			b.WriteString(" " + order[i].Path)
		}
		b.WriteString("\n")
	}
	return b.Bytes(), nil
}

// loadOrder returns m's transitive dependencies in an order they can be inserted
// (each after its own dependencies), ending with m. Ties follow the depends= order.
func loadOrder(m *Module, byName map[string]*Module) ([]*Module, error) {
	var out []*Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(x *Module) error
	visit = func(x *Module) error {
		switch state[x.Name] {
		case 1:
			return fmt.Errorf("module dependency cycle through %s", x.Name)
		case 2:
			return nil
		}
		state[x.Name] = 1
		for _, d := range x.Depends {
			dm, ok := byName[d]
			if !ok {
				return fmt.Errorf("module %s depends on %s, which is not in the module set: %w", x.Name, d, ErrUnknownModule)
			}
			if err := visit(dm); err != nil {
				return err
			}
		}
		state[x.Name] = 2
		out = append(out, x)
		return nil
	}
	if err := visit(m); err != nil {
		return nil, err
	}
	return out, nil
}

// Alias renders modules.alias ("alias <pattern> <module>"), modules sorted by path,
// aliases in .modinfo order.
func Alias(mods []*Module) []byte {
	var b bytes.Buffer
	b.WriteString("# Aliases extracted from modules themselves.\n")
	for _, m := range sortedByPath(mods) {
		for _, a := range m.Aliases {
			fmt.Fprintf(&b, "alias %s %s\n", a, m.Name)
		}
	}
	return b.Bytes()
}

// Softdep renders modules.softdep ("softdep <module> pre: … post: …").
func Softdep(mods []*Module) []byte {
	var b bytes.Buffer
	b.WriteString("# Soft dependencies extracted from modules themselves.\n")
	for _, m := range sortedByPath(mods) {
		for _, s := range m.Softdep {
			fmt.Fprintf(&b, "softdep %s %s\n", m.Name, s)
		}
	}
	return b.Bytes()
}

// FilterOrder keeps the lines of a modules.order file that name modules in mods.
func FilterOrder(order []byte, mods []*Module) []byte {
	have := map[string]bool{}
	for _, m := range mods {
		have[m.Path] = true
	}
	var b bytes.Buffer
	for _, line := range strings.Split(string(order), "\n") {
		if have[strings.TrimSpace(line)] {
			b.WriteString(strings.TrimSpace(line) + "\n")
		}
	}
	return b.Bytes()
}

func sortedByPath(mods []*Module) []*Module {
	s := slices.Clone(mods)
	slices.SortFunc(s, func(a, b *Module) int { return strings.Compare(a.Path, b.Path) })
	return s
}
