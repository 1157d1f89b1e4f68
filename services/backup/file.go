package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// FileSuffix ends every backup file name.
const FileSuffix = ".backup"

// FileName is a backup's default name: kiln-<host>-<UTC time>.backup.
func FileName(host string, t time.Time) string {
	return "kiln-" + safeName(host) + "-" + t.UTC().Format("20060102T150405Z") + FileSuffix
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

func safeName(s string) string {
	if s = unsafeChars.ReplaceAllString(s, "_"); s == "" {
		return "kiln"
	}
	return s
}

// WriteFile writes a backup to path (mode 0600) through a temporary file
// in the same directory, renamed into place only once complete: a failed
// or interrupted backup never leaves a file that looks like one.
func WriteFile(ctx context.Context, path string, src Source, key Key) (Manifest, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	m, err := Create(ctx, tmp, src, key)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Manifest{}, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	return m, syncDir(dir)
}

// Prune removes all but the newest keep backup files in dir (by the time
// in their names, whatever the host name) and returns what it removed. Files
// that are not backups are left alone.
func Prune(dir string, keep int) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), "kiln-") && strings.HasSuffix(e.Name(), FileSuffix) {
			names = append(names, e.Name())
		}
	}
	stamp := func(n string) string {
		n = strings.TrimSuffix(n, FileSuffix)
		return n[max(0, len(n)-len("20060102T150405Z")):]
	}
	sort.Slice(names, func(i, j int) bool { return stamp(names[i]) < stamp(names[j]) })
	var removed []string
	for len(names) > keep {
		p := filepath.Join(dir, names[0])
		if err := os.Remove(p); err != nil {
			return removed, err
		}
		removed, names = append(removed, p), names[1:]
	}
	return removed, nil
}
