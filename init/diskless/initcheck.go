package diskless

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrNoInit is returned by CheckInit when the root has no usable init.
var ErrNoInit = errors.New("the root image has no usable init")

// CheckInit checks the contract a root image meets (shared with
// `kiln roots import`): init (/sbin/init) is, after following symbolic
// links inside root (absolute targets are relative to root, as after the
// switch), an executable regular file that is an x86-64 ELF program or a
// "#!" script. The error names what is wrong.
func CheckInit(root, init string) error {
	p, err := resolveIn(root, init)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNoInit, init, err)
	}
	st, err := os.Stat(filepath.Join(root, p))
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNoInit, init, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %s (%s) is not a regular file", ErrNoInit, init, p)
	}
	if st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%w: %s (%s) is not executable (mode %v)", ErrNoInit, init, p, st.Mode().Perm())
	}
	f, err := os.Open(filepath.Join(root, p))
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNoInit, init, err)
	}
	defer f.Close()
	head := make([]byte, 20) // an ELF header up to e_machine
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("#!")):
		return nil
	case !bytes.HasPrefix(head, []byte(elf.ELFMAG)):
		return fmt.Errorf("%w: %s (%s) is neither an ELF program nor a #! script", ErrNoInit, init, p)
	case n < 20:
		return fmt.Errorf("%w: %s (%s) is a truncated ELF file", ErrNoInit, init, p)
	}
	machine := elf.Machine(binary.LittleEndian.Uint16(head[18:20]))
	if elf.Class(head[elf.EI_CLASS]) != elf.ELFCLASS64 || elf.Data(head[elf.EI_DATA]) != elf.ELFDATA2LSB || machine != elf.EM_X86_64 {
		return fmt.Errorf("%w: %s (%s) is an ELF program for %v, not x86-64", ErrNoInit, init, p, machine)
	}
	return nil
}

// resolveIn follows the symbolic links of name inside root and returns the
// resolved path (absolute, relative to root). ".." never climbs above root.
func resolveIn(root, name string) (string, error) {
	const maxLinks = 40
	links := 0
	todo := strings.Split(strings.TrimPrefix(path.Clean("/"+name), "/"), "/")
	cur := "/"
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("more than %d symbolic links", maxLinks)
		}
		target, err := os.Readlink(filepath.Join(root, next))
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
