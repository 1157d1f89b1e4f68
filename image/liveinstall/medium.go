package liveinstall

import (
	"fmt"
	"io"

	"kiln.dev/kiln/init/isofs"
)

// RootPath is the live root squashfs in the ISO (image.ISORoot).
const RootPath = "LIVE/ROOT.SFS"

// Medium reads the install map of the live ISO in r (a CD-ROM, a stick, or
// the ISO file) and returns it with the byte ranges its extents read.
func Medium(r io.ReaderAt) (Map, map[string]io.ReaderAt, error) {
	v, err := isofs.Open(r)
	if err != nil {
		return Map{}, nil, fmt.Errorf("reading the live medium: %w", err)
	}
	b, err := v.ReadFile(MapPath)
	if err != nil {
		return Map{}, nil, fmt.Errorf("reading %s on the live medium: %w (an ISO from a kiln without install to disk?)", MapPath, err)
	}
	m, err := Parse(b)
	if err != nil {
		return Map{}, nil, err
	}
	src := map[string]io.ReaderAt{}
	for name, path := range map[string]string{SourceData: DataPath, SourceRoot: RootPath} {
		e, err := v.Lookup(path)
		if err != nil {
			return Map{}, nil, fmt.Errorf("finding %s on the live medium: %w", path, err)
		}
		if need := m.Need()[name]; need > int64(e.Size) {
			return Map{}, nil, fmt.Errorf("%w: it reads %d bytes of %s, which has %d (the ISO is damaged: write it again)", ErrMap, need, path, e.Size)
		}
		src[name] = io.NewSectionReader(r, e.Offset, int64(e.Size))
	}
	return m, src, nil
}
