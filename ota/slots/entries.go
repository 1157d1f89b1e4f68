package slots

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"kiln.dev/kiln/ota/bootentry"
	"kiln.dev/kiln/ota/espfs"
	"kiln.dev/kiln/partitions"
)

// Scan reads the kiln entries of the ESP. Files that are not kiln entries
// are skipped; kiln-named files that do not parse are reported in problems
// (systemd-boot would ignore or misboot them; Tidy leaves them for an operator).
func Scan(f espfs.FS) (entries []bootentry.Entry, problems []string, err error) {
	names, err := f.ReadDir(bootentry.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("listing boot entries: %w", err)
	}
	for _, n := range names {
		if _, _, err := bootentry.ParseFileName(n); err != nil {
			continue
		}
		b, err := f.ReadFile(path.Join(bootentry.Dir, n))
		if err != nil {
			return nil, nil, fmt.Errorf("reading boot entry %s: %w", n, err)
		}
		e, err := bootentry.Parse(n, b)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		entries = append(entries, e)
	}
	return entries, problems, nil
}

// OfSlot returns the entry of slot s that systemd-boot would pick among that
// slot's entries (there is one, except right after a crash in Replace).
func OfSlot(entries []bootentry.Entry, s partitions.Slot) (bootentry.Entry, bool) {
	var mine []bootentry.Entry
	for _, e := range entries {
		if e.Slot == s {
			mine = append(mine, e)
		}
	}
	return bootentry.Pick(mine)
}

func entryPath(e bootentry.Entry) string { return path.Join(bootentry.Dir, e.FileName()) }

// Write makes entry e durable under its name (temporary name, rename, sync).
// The slot's GRUB snippet (its kernel command line for legacy BIOS boots) is
// written first, when it changed: GRUB boots an entry only with it.
func Write(f espfs.FS, e bootentry.Entry) error {
	if err := writeGRUBSnippet(f, e); err != nil {
		return err
	}
	if err := f.MkdirAll(bootentry.Dir); err != nil {
		return fmt.Errorf("creating %s: %w", bootentry.Dir, err)
	}
	if _, err := espfs.ReplaceFile(f, entryPath(e), bytes.NewReader(bootentry.Render(e))); err != nil {
		return fmt.Errorf("writing boot entry %s: %w", e.FileName(), err)
	}
	return nil
}

// writeGRUBSnippet writes kiln/<slot>/grub.cfg for e unless it already holds it.
func writeGRUBSnippet(f espfs.FS, e bootentry.Entry) error {
	name := bootentry.SlotGRUBPath(e.Slot)
	want := bootentry.RenderGRUB(e.Blessed())
	if have, err := f.ReadFile(name); err == nil && bytes.Equal(have, want) {
		return nil
	}
	if err := f.MkdirAll(path.Dir(name)); err != nil {
		return fmt.Errorf("creating %s: %w", path.Dir(name), err)
	}
	if _, err := espfs.ReplaceFile(f, name, bytes.NewReader(want)); err != nil {
		return fmt.Errorf("writing the GRUB snippet of slot %s: %w", e.Slot, err)
	}
	return nil
}

// FoldGRUB moves the tries GRUB counted (its records in grub/grubenv: a
// legacy BIOS boot cannot rename files) into the entry file names, so the
// files alone say again what both loaders boot. It is idempotent: a record
// already folded changes nothing. It returns the entries renamed.
func FoldGRUB(f espfs.FS) ([]string, error) {
	b, err := f.ReadFile(bootentry.GRUBEnvPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // an image without GRUB
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", bootentry.GRUBEnvPath, err)
	}
	env, err := bootentry.DecodeGRUBEnv(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bootentry.GRUBEnvPath, err)
	}
	tries := bootentry.ParseGRUBTries(env)
	if len(tries) == 0 {
		return nil, nil
	}
	entries, _, err := Scan(f)
	if err != nil {
		return nil, err
	}
	var renamed []string
	for _, e := range entries {
		eff := bootentry.Effective(e, tries)
		if eff.FileName() == e.FileName() {
			continue
		}
		if err := Replace(f, e, eff); err != nil {
			return renamed, fmt.Errorf("folding GRUB's tries into %s: %w", e.FileName(), err)
		}
		renamed = append(renamed, e.FileName()+" → "+eff.FileName())
	}
	return renamed, nil
}

// Replace turns entry old into e: e is written durably first, then old is
// removed (see the package doc).
func Replace(f espfs.FS, old, e bootentry.Entry) error {
	if old.FileName() == e.FileName() {
		return nil
	}
	if err := Write(f, e); err != nil {
		return err
	}
	return removeEntry(f, old)
}

func removeEntry(f espfs.FS, e bootentry.Entry) error {
	if err := f.Remove(entryPath(e)); err != nil {
		return fmt.Errorf("removing boot entry %s: %w", e.FileName(), err)
	}
	if err := f.SyncDir(bootentry.Dir); err != nil {
		return fmt.Errorf("removing boot entry %s: %w", e.FileName(), err)
	}
	return nil
}

// RemoveSlot removes every entry of slot s (durably): the first step of an
// install, so a half-written slot can never be booted.
func RemoveSlot(f espfs.FS, entries []bootentry.Entry, s partitions.Slot) error {
	for _, e := range entries {
		if e.Slot != s {
			continue
		}
		if err := f.Remove(entryPath(e)); err != nil {
			return fmt.Errorf("removing boot entry %s: %w", e.FileName(), err)
		}
	}
	if err := f.SyncDir(bootentry.Dir); err != nil {
		return fmt.Errorf("removing the boot entries of slot %s: %w", s, err)
	}
	return nil
}

// Bless commits entry e (drops its counter).
func Bless(f espfs.FS, e bootentry.Entry) (bootentry.Entry, error) {
	b := e.Blessed()
	return b, Replace(f, e, b)
}

// MarkBad uses up e's tries, so systemd-boot sorts it last and boots the
// other slot. The entry stays for the record (and a manual retry).
func MarkBad(f espfs.FS, e bootentry.Entry) (bootentry.Entry, error) {
	if e.Bad() {
		return e, nil
	}
	bad := e
	done := 0
	if e.Counter != nil {
		done = e.Counter.Done
	}
	bad.Counter = &bootentry.Counter{Left: 0, Done: done}
	return bad, Replace(f, e, bad)
}

// Tidy removes leftovers of interrupted entry changes: temporary files and
// counted duplicates of an entry that also exists committed, or of a
// generation that also has a bad entry. It returns what it removed.
func Tidy(f espfs.FS) ([]string, error) {
	names, err := f.ReadDir(bootentry.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing boot entries: %w", err)
	}
	var removed []string
	for _, n := range names {
		if strings.HasPrefix(n, "kiln-") && strings.HasSuffix(n, ".conf.new") {
			removed = append(removed, n)
		}
	}
	entries, _, err := Scan(f)
	if err != nil {
		return nil, err
	}
	type key struct {
		gen  int
		slot partitions.Slot
	}
	committed, bad := map[key]bool{}, map[key]bool{}
	for _, e := range entries {
		k := key{e.Generation, e.Slot}
		switch {
		case e.Counter == nil:
			committed[k] = true
		case e.Bad():
			bad[k] = true
		}
	}
	for _, e := range entries {
		k := key{e.Generation, e.Slot}
		if e.Counter != nil && committed[k] || e.Counter != nil && !e.Bad() && bad[k] {
			removed = append(removed, e.FileName())
		}
	}
	if len(removed) == 0 {
		return nil, nil
	}
	for _, n := range removed {
		if err := f.Remove(path.Join(bootentry.Dir, n)); err != nil {
			return nil, fmt.Errorf("removing %s: %w", n, err)
		}
	}
	if err := f.SyncDir(bootentry.Dir); err != nil {
		return nil, err
	}
	return removed, nil
}
