package inventory

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// FS is the read-only view of a machine's /sys and /proc the inventory reads.
// Names are slash-separated and relative to the machine's root
// ("sys/class/net"). DirFS reads a real directory; tests wrap it to record
// what was read.
type FS interface {
	ReadFile(name string) ([]byte, error)
	ReadDir(name string) ([]fs.DirEntry, error)
	Readlink(name string) (string, error)
}

// DirFS returns an FS over the directory root ("/" on the machine itself, a
// captured tree in tests). Symlinks inside the tree are followed as the
// kernel follows them, so captured trees must keep sysfs's relative links.
func DirFS(root string) FS { return dirFS(root) }

type dirFS string

func (d dirFS) join(name string) string { return filepath.Join(string(d), filepath.FromSlash(name)) }

func (d dirFS) ReadFile(name string) ([]byte, error)       { return os.ReadFile(d.join(name)) }
func (d dirFS) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(d.join(name)) }
func (d dirFS) Readlink(name string) (string, error)       { return os.Readlink(d.join(name)) }

// reader wraps an FS with the small parsing helpers sysfs needs.
type reader struct{ fs FS }

// str reads a one-line attribute, trimmed; "" and an error when unreadable.
func (r reader) str(name string) (string, error) {
	b, err := r.fs.ReadFile(name)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// strOr reads an attribute, "" when unreadable.
func (r reader) strOr(name string) string {
	s, _ := r.str(name)
	return s
}

// int64Or reads an integer attribute, def when unreadable or malformed.
func (r reader) int64Or(name string, def int64) int64 {
	s, err := r.str(name)
	if err != nil {
		return def
	}
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		return def
	}
	return n
}

// names lists a directory's entry names, nil when unreadable.
func (r reader) names(dir string) []string {
	ents, err := r.fs.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// linkBase returns the last element of a symlink's target ("ixgbe" for
// device/driver), "" when it is not a link.
func (r reader) linkBase(name string) string {
	t, err := r.fs.Readlink(name)
	if err != nil {
		return ""
	}
	return path.Base(t)
}

// errLinkLoop is what realpath returns for too many link hops.
var errLinkLoop = errors.New("too many levels of symbolic links")

// realpath resolves every symlink in name within the FS and returns the
// canonical slash path relative to the root, the way the kernel would
// resolve it ("sys/class/net/eth0/device" →
// "sys/devices/pci0000:00/0000:00:03.0/virtio2").
func (r reader) realpath(name string) (string, error) {
	parts := strings.Split(path.Clean(name), "/")
	resolved := ""
	for hops := 0; len(parts) > 0; {
		p := parts[0]
		parts = parts[1:]
		if p == "" || p == "." {
			continue
		}
		if p == ".." {
			resolved = path.Dir(resolved)
			if resolved == "." {
				resolved = ""
			}
			continue
		}
		next := path.Join(resolved, p)
		target, err := r.fs.Readlink(next)
		if err != nil {
			resolved = next
			continue
		}
		if hops++; hops > 40 {
			return "", errLinkLoop
		}
		if strings.HasPrefix(target, "/") {
			resolved = ""
		}
		parts = append(strings.Split(target, "/"), parts...)
	}
	return resolved, nil
}

// pciAddress returns the last PCI function address ("0000:03:00.0") on a
// canonical device path, "" when the device does not sit on PCI.
func pciAddress(devpath string) string {
	var last string
	for _, p := range strings.Split(devpath, "/") {
		if isPCIAddress(p) {
			last = p
		}
	}
	return last
}

// isPCIAddress matches dddd:bb:dd.f.
func isPCIAddress(s string) bool {
	if len(s) != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.' {
		return false
	}
	for i, c := range s {
		if i == 4 || i == 7 || i == 10 {
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
