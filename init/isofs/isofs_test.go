package isofs

import (
	"bytes"
	"testing"
)

// FuzzVolume feeds arbitrary bytes as a medium: the reader must return errors,
// never panic or allocate without bound (stage 1 reads every disk it sees).
func FuzzVolume(f *testing.F) {
	seed := make([]byte, 20*BlockSize)
	pvd := seed[16*BlockSize:]
	pvd[0] = 1
	copy(pvd[1:], "CD001")
	pvd[128], pvd[129] = 0x00, 0x08
	pvd[156], pvd[158], pvd[166], pvd[181], pvd[188] = 34, 18, 0x08, 2, 1
	term := seed[17*BlockSize:]
	term[0] = 255
	copy(term[1:], "CD001")
	f.Add(seed)
	f.Add(bytes.Repeat([]byte{0xff}, 18*BlockSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Open(bytes.NewReader(b))
		if err != nil {
			return
		}
		v.Lookup("LIVE/ROOT.SFS")
		v.Catalog()
	})
}
