package crashfs

import (
	"path"

	"kiln.dev/kiln/ota/bootentry"
	"kiln.dev/kiln/ota/espfs"
)

// Entries reads the kiln entries systemd-boot would see: files under
// loader/entries named like kiln entries whose contents parse. (systemd-boot
// also skips an entry without a linux line, which is what a torn file is.)
func Entries(f espfs.FS) []bootentry.Entry {
	names, err := f.ReadDir(bootentry.Dir)
	if err != nil {
		return nil
	}
	var out []bootentry.Entry
	for _, n := range names {
		b, err := f.ReadFile(path.Join(bootentry.Dir, n))
		if err != nil {
			continue
		}
		if e, err := bootentry.Parse(n, b); err == nil {
			out = append(out, e)
		}
	}
	return out
}

// Boot models systemd-boot 252 starting the machine: it picks an entry and,
// if it is counted with tries left, renames it to count the try (durably,
// as its own write). ok is false when no entry boots.
func Boot(f espfs.FS) (bootentry.Entry, bool) {
	e, ok := bootentry.Pick(Entries(f))
	if !ok {
		return e, false
	}
	at := e.Attempted()
	if at.FileName() != e.FileName() {
		f.Rename(path.Join(bootentry.Dir, e.FileName()), path.Join(bootentry.Dir, at.FileName()))
		f.SyncDir(bootentry.Dir)
	}
	return at, true
}
