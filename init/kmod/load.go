package kmod

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// InsertFunc inserts one module file with parameters into the kernel.
type InsertFunc func(file, params string) error

// Loader loads modules and their dependencies from one module directory.
// It is safe for concurrent use.
type Loader struct {
	dir       string
	sysModule string
	insert    InsertFunc
	log       *slog.Logger
	index     *Index // read-only after NewLoader

	// mu serializes insertions and guards failed.
	mu sync.Mutex
	// failed remembers modules whose insertion failed, so coldplug does not
	// retry (and re-log) them for every device.
	failed map[string]error
}

// Options configure a Loader; zero values pick the running system's paths.
type Options struct {
	// Dir is the module directory; default /lib/modules/<uname -r>.
	Dir string
	// SysModule is where loaded modules show up; default /sys/module.
	SysModule string
	// Insert defaults to finit_module(2).
	Insert InsertFunc
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// NewLoader reads the module index of dir.
func NewLoader(o Options) (*Loader, error) {
	if o.Dir == "" {
		d, err := DefaultDir("/lib/modules")
		if err != nil {
			return nil, err
		}
		o.Dir = d
	}
	if o.SysModule == "" {
		o.SysModule = "/sys/module"
	}
	if o.Insert == nil {
		o.Insert = FinitInsert
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ix, err := ReadIndex(o.Dir)
	if err != nil {
		return nil, err
	}
	return &Loader{dir: o.Dir, sysModule: o.SysModule, insert: o.Insert, log: o.Logger.With("component", "kmod"), index: ix, failed: map[string]error{}}, nil
}

// DefaultDir returns base/<release of the running kernel>.
func DefaultDir(base string) (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("reading kernel release: %w", err)
	}
	return filepath.Join(base, unix.ByteSliceToString(u.Release[:])), nil
}

// Index returns the loader's module index.
func (l *Loader) Index() *Index { return l.index }

// Loaded reports whether a module is live, coming up, or built in.
func (l *Loader) Loaded(module string) bool {
	m := normalize(module)
	if l.index.Builtin(m) {
		return true
	}
	st, err := os.ReadFile(filepath.Join(l.sysModule, m, "initstate"))
	if err == nil {
		s := strings.TrimSpace(string(st))
		return s == "live" || s == "coming"
	}
	// A directory without initstate is a built-in module with parameters.
	fi, err := os.Stat(filepath.Join(l.sysModule, m))
	return err == nil && fi.IsDir()
}

// Load loads the module (or every module an alias resolves to) with its
// dependencies; params apply to the named modules only. It returns ErrNotFound
// when nothing matches name. Loading an already loaded module is not an error.
func (l *Loader) Load(name, params string) error {
	mods := l.index.Resolve(name)
	if len(mods) == 0 {
		return fmt.Errorf("loading %s: %w", name, ErrNotFound)
	}
	var errs []error
	for _, m := range mods {
		if err := l.loadOne(m, params); err != nil {
			errs = append(errs, err)
		}
	}
	// modprobe succeeds for an alias when any of its modules loaded.
	if len(errs) == len(mods) {
		return errors.Join(errs...)
	}
	return nil
}

// LoadAlias loads every module matching a device's modalias, as coldplug and
// hotplug do. Modules that failed before are not tried again. It returns the
// modules it inserted (not those already loaded).
func (l *Loader) LoadAlias(modalias string) ([]string, error) {
	mods := l.index.Resolve(modalias)
	var loaded []string
	var errs []error
	for _, m := range mods {
		if l.Loaded(m) {
			continue
		}
		l.mu.Lock()
		_, failed := l.failed[m]
		l.mu.Unlock()
		if failed {
			continue
		}
		if err := l.loadOne(m, ""); err != nil {
			errs = append(errs, err)
			continue
		}
		loaded = append(loaded, m)
	}
	return loaded, errors.Join(errs...)
}

func (l *Loader) loadOne(module, params string) error {
	order, err := l.index.LoadOrder(module)
	if err != nil {
		return fmt.Errorf("loading %s: %w", module, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, m := range order {
		if l.Loaded(m) {
			continue
		}
		p := ""
		if i == len(order)-1 {
			p = params
		}
		file := filepath.Join(l.dir, l.index.paths[m])
		if err := l.insert(file, p); err != nil && !errors.Is(err, unix.EEXIST) {
			err = fmt.Errorf("loading %s: inserting %s: %w", module, file, err)
			l.failed[m] = err
			l.failed[module] = err
			return err
		}
		l.log.Debug("module loaded", "module", m)
	}
	return nil
}

// FinitInsert inserts a module file with finit_module(2); compressed files
// are handed to the kernel to decompress.
func FinitInsert(file, params string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if strings.HasSuffix(file, ".xz") || strings.HasSuffix(file, ".zst") || strings.HasSuffix(file, ".gz") {
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	return unix.FinitModule(int(f.Fd()), params, flags)
}
