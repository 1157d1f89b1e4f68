package nfs

import (
	"fmt"
	"path/filepath"
)

// flusher empties the kernel's export caches; Kernel is the real one.
type flusher interface{ Flush() error }

// Exports applies desired export states: the plan in force answers the
// kernel's upcalls, and a changed plan flushes the kernel's caches so they
// are asked again. Applying the same plan twice changes nothing.
type Exports struct {
	Answerer *Answerer
	Kernel   flusher
}

// Apply computes the plan of in and puts it in force. A plan that cannot be
// served (ErrExposesData, an fsid collision, an export path that is missing
// or reached through a symbolic link) is refused and the exports in force
// stay as they are. changed says whether the kernel's caches were flushed.
func (x Exports) Apply(in Input) (p Plan, changed bool, err error) {
	p, err = MakePlan(in)
	if err != nil {
		return Plan{}, false, err
	}
	if err := checkPaths(p); err != nil {
		return Plan{}, false, err
	}
	if !x.Answerer.Set(p) {
		return p, false, nil
	}
	if err := x.Kernel.Flush(); err != nil {
		return p, true, err
	}
	return p, true, nil
}

// checkPaths refuses exports whose directory is missing, not a directory, or
// resolves elsewhere (a symbolic link inside a root image's path could point
// the export at the data partition).
func checkPaths(p Plan) error {
	for _, e := range p.Exports {
		real, err := filepath.EvalSymlinks(e.Path)
		if err != nil {
			return fmt.Errorf("export %s: %w", e.Name, err)
		}
		if real != e.Path {
			return fmt.Errorf("export %s: %s resolves to %s through a symbolic link (remove the link): %w", e.Name, e.Path, real, ErrExposesData)
		}
	}
	return nil
}
