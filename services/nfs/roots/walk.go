package roots

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Walk calls fn with a tar header for every entry of the tree at dir, in
// lexical order, owners, modes and times kept and hard links as links to
// their first name; body is the content of regular files.
func Walk(dir string, fn func(h *tar.Header, body io.Reader) error) error {
	links := map[[2]uint64]string{}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		target := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		h.Name = filepath.ToSlash(rel)
		if fi.IsDir() && rel != "." {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			h.Uid, h.Gid = int(st.Uid), int(st.Gid)
			if fi.Mode().IsRegular() && st.Nlink > 1 {
				key := [2]uint64{st.Dev, st.Ino}
				if first, seen := links[key]; seen {
					h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
					return fn(h, nil)
				}
				links[key] = h.Name
			}
		}
		if !fi.Mode().IsRegular() {
			return fn(h, nil)
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return fn(h, f)
	})
}

// WriteTar writes the tree at dir to w as a tar archive (what `kiln roots
// import DIR` uploads).
func WriteTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := Walk(dir, func(h *tar.Header, body io.Reader) error {
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if body != nil {
			_, err := io.Copy(tw, body)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
