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

	"kiln.dev/kiln/internal/atomicfile"
)

// FileSuffix ends every backup file name.
const FileSuffix = ".backup"

// FileName is a backup's default name: kiln-<host>-<UTC time>.backup.
func FileName(host string, t time.Time) string {
	return "kiln-" + safeName(host) + "-" + t.UTC().Format(stampLayout) + FileSuffix
}

const stampLayout = "20060102T150405Z"

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
	var m Manifest
	var cerr error
	err := atomicfile.Write(path, 0o600, func(f *os.File) error {
		m, cerr = Create(ctx, f, src, key)
		return cerr
	})
	if cerr != nil {
		return Manifest{}, cerr // it names the step
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	return m, nil
}

// Prune removes all but the newest keep backup files in dir (by the time
// in their names, whatever the host name) and returns what it removed.
// Files not named like FileName's are left alone.
func Prune(dir string, keep int) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	// Only files named as FileName names them count; their time sorts them.
	type backupFile struct {
		name string
		at   time.Time
	}
	var files []backupFile
	for _, e := range entries {
		n := strings.TrimSuffix(e.Name(), FileSuffix)
		if !e.Type().IsRegular() || !strings.HasPrefix(n, "kiln-") || n == e.Name() || len(n) < len(stampLayout) {
			continue
		}
		if at, err := time.Parse(stampLayout, n[len(n)-len(stampLayout):]); err == nil {
			files = append(files, backupFile{e.Name(), at})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].at.Before(files[j].at) })
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.name
	}
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
