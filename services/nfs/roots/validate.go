package roots

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrNotLinuxRoot marks a tree that is not a root a diskless machine can
// boot: the contract with the diskless initramfs, which mounts the root and
// executes /sbin/init.
var ErrNotLinuxRoot = errors.New("not a Linux root")

// Validate checks the contract: dir has a directory /etc and an executable
// /sbin/init — a file, or a symbolic link resolving inside the root — that
// is an x86-64 ELF program or a #! script. The error names what is missing.
func Validate(dir string) error {
	fi, err := os.Lstat(filepath.Join(dir, "etc"))
	if err != nil || !fi.IsDir() {
		return fmt.Errorf("%w: it has no directory /etc (is the archive's top directory the root itself? import the directory that holds etc/, sbin/, usr/)", ErrNotLinuxRoot)
	}
	init, err := resolve(dir, "/sbin/init")
	if err != nil {
		return fmt.Errorf("%w: /sbin/init: %v (install an init, e.g. systemd-sysv, or link /sbin/init to your program)", ErrNotLinuxRoot, err)
	}
	real := filepath.Join(dir, init)
	fi, err = os.Stat(real)
	if err != nil {
		return fmt.Errorf("%w: /sbin/init: %v", ErrNotLinuxRoot, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: /sbin/init (%s) is not a regular file", ErrNotLinuxRoot, init)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%w: /sbin/init (%s) is not executable (chmod +x it)", ErrNotLinuxRoot, init)
	}
	f, err := os.Open(real)
	if err != nil {
		return fmt.Errorf("%w: /sbin/init: %v", ErrNotLinuxRoot, err)
	}
	defer f.Close()
	head := make([]byte, 2)
	if _, err := io.ReadFull(f, head); err == nil && string(head) == "#!" {
		return nil
	}
	e, err := elf.NewFile(f)
	if err != nil {
		return fmt.Errorf("%w: /sbin/init (%s) is neither an ELF program nor a #! script", ErrNotLinuxRoot, init)
	}
	if e.Class != elf.ELFCLASS64 || e.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%w: /sbin/init (%s) is a %s %s program; diskless machines here run x86-64", ErrNotLinuxRoot, init, e.Class, e.Machine)
	}
	return nil
}

// resolve follows p's symbolic links the way the booted machine will, with
// dir as "/": absolute targets start again at the root, ".." stops at it. It
// returns the final path relative to the root ("/lib/systemd/systemd").
func resolve(dir, p string) (string, error) {
	todo := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
	cur := "/"
	for links := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		fi, err := os.Lstat(filepath.Join(dir, next))
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s does not exist", next)
		} else if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > 40 {
			return "", fmt.Errorf("too many symbolic links at %s", next)
		}
		target, err := os.Readlink(filepath.Join(dir, next))
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			cur = "/"
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return cur, nil
}
