package install

import (
	"archive/tar"
	"io"
)

// tarWriter returns a function adding one member (and the end-of-archive
// blocks) to w.
func tarWriter(w io.Writer) func(name string, data []byte) {
	return func(name string, data []byte) {
		tw := tar.NewWriter(w)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644})
		tw.Write(data)
		tw.Close()
	}
}
