// Package bootentry renders and parses kiln's systemd-boot entry files (Boot Loader
// Specification type #1) with their "+left-done" boot counters, and models which
// entry systemd-boot 252 boots, so OTA install, commit and the recovery menu's
// rollback can reason about the ESP without a firmware in the loop.
package bootentry

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/partitions"
)

// SortKey is the sort-key of every kiln entry.
const SortKey = "kiln"

// Dir is the ESP directory holding the entry files.
const Dir = "loader/entries"

// ErrNotKiln marks a file name that is not a kiln entry ("kiln-<gen>[+L[-D]].conf").
var ErrNotKiln = errors.New("not a kiln boot entry file name")

// Counter is a systemd-boot boot-counting state: tries left and tries done.
type Counter struct {
	Left, Done int
}

// Entry is one kiln boot entry.
type Entry struct {
	Generation int             // OTA generation, > 0
	Slot       partitions.Slot // root slot the entry boots
	Version    string          // human-readable release string shown in the title
	RootUUID   string          // PARTUUID of the slot's root partition
	// Verity is the kiln.verity value (image/verity.Params) of the slot's
	// root: stage 1 mounts the root only through dm-verity with it.
	Verity  string
	Counter *Counter // nil: no boot counting (a committed entry)
}

// FileName returns the entry's file name, e.g. "kiln-7+3-0.conf" or "kiln-1.conf".
func (e Entry) FileName() string {
	name := "kiln-" + strconv.Itoa(e.Generation)
	if e.Counter != nil {
		name += fmt.Sprintf("+%d-%d", e.Counter.Left, e.Counter.Done)
	}
	return name + ".conf"
}

// VersionField returns the entry's "version" line value: the generation zero-padded
// to 8 digits, so systemd-boot's version compare orders generations numerically.
func (e Entry) VersionField() string { return fmt.Sprintf("%08d", e.Generation) }

// KernelPath and InitrdPath return the ESP paths of the slot's kernel and initrd.
func KernelPath(s partitions.Slot) string { return "/kiln/" + string(s) + "/vmlinuz" }

// InitrdPath returns the ESP path of the slot's initrd.
func InitrdPath(s partitions.Slot) string { return "/kiln/" + string(s) + "/initrd" }

// Options returns the kernel command line of an entry.
func (e Entry) Options() string {
	v := ""
	if e.Verity != "" {
		v = " " + verity.CmdlineParam + "=" + e.Verity
	}
	return fmt.Sprintf("root=PARTUUID=%s kiln.slot=%s%s ro console=tty0 console=ttyS0,115200 panic=10",
		strings.ToLower(e.RootUUID), e.Slot, v)
}

// Render returns the entry file's contents.
func Render(e Entry) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "title kiln %s (slot %s)\n", e.Version, e.Slot)
	fmt.Fprintf(&b, "sort-key %s\n", SortKey)
	fmt.Fprintf(&b, "version %s\n", e.VersionField())
	fmt.Fprintf(&b, "linux %s\n", KernelPath(e.Slot))
	fmt.Fprintf(&b, "initrd %s\n", InitrdPath(e.Slot))
	fmt.Fprintf(&b, "options %s\n", e.Options())
	return b.Bytes()
}

// ParseFileName splits a kiln entry file name into generation and counter (nil when
// the name has none). Names of other entries return ErrNotKiln.
func ParseFileName(name string) (gen int, c *Counter, err error) {
	base, ok := strings.CutSuffix(name, ".conf")
	if !ok {
		return 0, nil, fmt.Errorf("%q: %w", name, ErrNotKiln)
	}
	base, ok = strings.CutPrefix(base, "kiln-")
	if !ok {
		return 0, nil, fmt.Errorf("%q: %w", name, ErrNotKiln)
	}
	genStr, counter, hasCounter := strings.Cut(base, "+")
	gen, err = strconv.Atoi(genStr)
	if err != nil || gen <= 0 || genStr != strconv.Itoa(gen) {
		return 0, nil, fmt.Errorf("%q: generation %q is not a positive number: %w", name, genStr, ErrNotKiln)
	}
	if !hasCounter {
		return gen, nil, nil
	}
	c, err = parseCounter(counter)
	if err != nil {
		return 0, nil, fmt.Errorf("%q: %v: %w", name, err, ErrNotKiln)
	}
	return gen, c, nil
}

// parseCounter parses "LEFT" or "LEFT-DONE" the way systemd-boot does (DONE defaults to 0).
func parseCounter(s string) (*Counter, error) {
	leftStr, doneStr, hasDone := strings.Cut(s, "-")
	left, err := strconv.ParseUint(leftStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("boot counter %q: tries left is not a number", s)
	}
	var done uint64
	if hasDone {
		if done, err = strconv.ParseUint(doneStr, 10, 16); err != nil {
			return nil, fmt.Errorf("boot counter %q: tries done is not a number", s)
		}
	}
	return &Counter{Left: int(left), Done: int(done)}, nil
}

// Parse parses a kiln entry file given its name and contents.
func Parse(name string, data []byte) (Entry, error) {
	gen, c, err := ParseFileName(name)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Generation: gen, Counter: c}
	fields := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		fields[k] = strings.TrimSpace(v)
	}
	if err := sc.Err(); err != nil {
		return Entry{}, fmt.Errorf("reading boot entry %s: %w", name, err)
	}
	if v := fields["version"]; v != e.VersionField() {
		return Entry{}, fmt.Errorf("boot entry %s: version %q does not match generation %d in the file name", name, v, gen)
	}
	for _, opt := range strings.Fields(fields["options"]) {
		if u, ok := strings.CutPrefix(opt, "root=PARTUUID="); ok {
			e.RootUUID = strings.ToUpper(u)
		}
		if v, ok := strings.CutPrefix(opt, verity.CmdlineParam+"="); ok {
			if _, err := verity.ParseParams(v); err != nil {
				return Entry{}, fmt.Errorf("boot entry %s: %w", name, err)
			}
			e.Verity = v
		}
		if s, ok := strings.CutPrefix(opt, "kiln.slot="); ok {
			if e.Slot, err = partitions.ParseSlot(s); err != nil {
				return Entry{}, fmt.Errorf("boot entry %s: %w", name, err)
			}
		}
	}
	if e.Slot == "" || e.RootUUID == "" {
		return Entry{}, fmt.Errorf("boot entry %s: options lack kiln.slot= or root=PARTUUID=", name)
	}
	if want := KernelPath(e.Slot); fields["linux"] != want {
		return Entry{}, fmt.Errorf("boot entry %s: linux %q, want %q for slot %s", name, fields["linux"], want, e.Slot)
	}
	title := fields["title"]
	if v, ok := strings.CutPrefix(title, "kiln "); ok {
		e.Version = strings.TrimSuffix(v, fmt.Sprintf(" (slot %s)", e.Slot))
	}
	return e, nil
}

// Bad reports whether the entry's tries are used up: systemd-boot sorts it last.
func (e Entry) Bad() bool { return e.Counter != nil && e.Counter.Left == 0 }

// Attempted returns the entry as systemd-boot leaves it after choosing it: an entry
// with tries left has one moved from left to done (systemd-boot renames the file
// before starting the kernel); others are unchanged.
func (e Entry) Attempted() Entry {
	if e.Counter == nil || e.Counter.Left == 0 {
		return e
	}
	e.Counter = &Counter{Left: e.Counter.Left - 1, Done: e.Counter.Done + 1}
	return e
}

// Blessed returns the entry with its counter dropped (the commit after a good boot).
func (e Entry) Blessed() Entry {
	e.Counter = nil
	return e
}

// Pick models systemd-boot 252's choice among kiln entries with loader.conf having
// no "default" line and no LoaderEntryDefault/OneShot EFI variables: entries are
// sorted (bad entries last, then by version descending, then by id descending,
// then more tries left and fewer done first) and the first one boots. It returns
// false when there is no entry at all.
func Pick(entries []Entry) (Entry, bool) {
	if len(entries) == 0 {
		return Entry{}, false
	}
	sorted := append([]Entry(nil), entries...)
	sort.SliceStable(sorted, func(i, j int) bool { return compare(sorted[i], sorted[j]) < 0 })
	return sorted[0], true
}

// compare is systemd-boot 252's boot_entry_compare for entries that share sort-key
// and machine-id (every kiln entry does).
func compare(a, b Entry) int {
	if r := cmpBool(a.Bad(), b.Bad()); r != 0 {
		return r
	}
	if r := -VersionCompare(a.VersionField(), b.VersionField()); r != 0 {
		return r
	}
	if r := -VersionCompare(strings.ToLower(a.FileName()), strings.ToLower(b.FileName())); r != 0 {
		return r
	}
	if a.Counter == nil || b.Counter == nil {
		return 0
	}
	if r := -cmpInt(a.Counter.Left, b.Counter.Left); r != 0 {
		return r
	}
	return cmpInt(a.Counter.Done, b.Counter.Done)
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
