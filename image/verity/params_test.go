package verity

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParamsRoundTripAndErrors(t *testing.T) {
	root := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		in      string
		want    Params
		wantErr string
	}{
		{in: root + ":1234:-", want: Params{DataBlocks: 1234, RootHash: bytes.Repeat([]byte{0xab}, 32)}},
		{in: root + ":7:deadbeef", want: Params{DataBlocks: 7, RootHash: bytes.Repeat([]byte{0xab}, 32), Salt: []byte{0xde, 0xad, 0xbe, 0xef}}},
		{in: root, wantErr: "want <root hash>:<data blocks>:<salt>"},
		{in: "abcd:1:-", wantErr: "64 hex digits"},
		{in: root + ":0:-", wantErr: `data blocks "0"`},
		{in: root + ":+5:-", wantErr: `data blocks "+5"`},
		{in: root + ":5:xyz", wantErr: "salt must be hex"},
		{in: root + ":5:", wantErr: "salt must be hex"},
	} {
		got, err := ParseParams(tt.in)
		if tt.wantErr != "" {
			if !errors.Is(err, ErrParams) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseParams(%q) error = %v, want ErrParams saying %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("ParseParams(%q) = %+v, %v, want %+v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("ParseParams(%q).String() = %q", tt.in, got.String())
		}
	}
}

func TestHashBlocksMatchesBuild(t *testing.T) {
	for _, blocks := range []int64{1, 2, 128, 129, 128 * 128, 128*128 + 1} {
		tree, err := Build(bytes.NewReader(make([]byte, blocks*BlockSize)), blocks*BlockSize, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := HashBlocks(blocks), int64(len(tree.Hash)/BlockSize); got != want {
			t.Errorf("HashBlocks(%d) = %d, want %d (the built tree's size)", blocks, got, want)
		}
	}
}

func FuzzParseParams(f *testing.F) {
	f.Add(strings.Repeat("00", 32) + ":9:ff")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseParams(s)
		if err == nil {
			if q, err := ParseParams(p.String()); err != nil || !q.Equal(p) {
				t.Errorf("ParseParams(%q).String() = %q does not parse back: %v", s, p.String(), err)
			}
		}
	})
}

// TestAppendVerifiedByVeritysetup lays out a partition image (odd-sized data,
// then the tree) with Append and has veritysetup check it in place with the
// table parameters stage 1 uses; a second Append of the same data gives the
// same bytes.
func TestAppendVerifiedByVeritysetup(t *testing.T) {
	vs, err := exec.LookPath("veritysetup")
	if err != nil {
		t.Skip("skipping: veritysetup not installed (apt-get install cryptsetup-bin)")
	}
	dir := t.TempDir()
	d := data(300*BlockSize + 123)
	var imgs [2][]byte
	var params [2]Params
	for i := range imgs {
		p := filepath.Join(dir, fmt.Sprint(i))
		os.WriteFile(p, d, 0o644)
		if params[i], err = Append(p); err != nil {
			t.Fatal(err)
		}
		imgs[i], _ = os.ReadFile(p)
	}
	if !bytes.Equal(imgs[0], imgs[1]) || !params[0].Equal(params[1]) {
		t.Fatal("two Appends of the same data differ")
	}
	p := params[0]
	if p.DataBlocks != 301 || int64(len(imgs[0])) != p.Size() || len(p.Salt) != 32 {
		t.Fatalf("Append: %d data blocks, %d bytes (Size %d), %d-byte salt; want 301 blocks and a 32-byte salt", p.DataBlocks, len(imgs[0]), p.Size(), len(p.Salt))
	}
	f := strings.Fields(p.TableParams("/img"))
	img := filepath.Join(dir, "0")
	verify := func() ([]byte, error) {
		return exec.Command(vs, "verify", "--no-superblock", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096",
			"--data-blocks="+f[5], fmt.Sprintf("--hash-offset=%d", p.DataBlocks*BlockSize), "--salt="+f[9], img, img, f[8]).CombinedOutput()
	}
	if out, err := verify(); err != nil {
		t.Fatalf("veritysetup verify: %v\n%s", err, out)
	}
	imgs[0][150*BlockSize+7] ^= 0x10
	os.WriteFile(img, imgs[0], 0o644)
	if out, err := verify(); err == nil {
		t.Errorf("veritysetup verify passed a flipped byte:\n%s", out)
	}
}

func TestCheck(t *testing.T) {
	for _, blocks := range []int{1, 300} {
		p := filepath.Join(t.TempDir(), "img")
		os.WriteFile(p, data(blocks*BlockSize), 0o644)
		params, err := Append(p)
		if err != nil {
			t.Fatal(err)
		}
		img, _ := os.ReadFile(p)
		if err := Check(bytes.NewReader(img), params); err != nil {
			t.Errorf("%d blocks: Check(good image) = %v", blocks, err)
		}
		if err := CheckRoot(bytes.NewReader(img), params); err != nil {
			t.Errorf("%d blocks: CheckRoot(good image) = %v", blocks, err)
		}
		img[len(img)-1] ^= 1 // the last tree byte, or the only data block's
		if err := Check(bytes.NewReader(img), params); !errors.Is(err, ErrMismatch) {
			t.Errorf("%d blocks: Check(flipped tree byte) = %v, want ErrMismatch", blocks, err)
		}
		img[len(img)-1] ^= 1
		img[0] ^= 1
		if err := Check(bytes.NewReader(img), params); !errors.Is(err, ErrMismatch) {
			t.Errorf("%d blocks: Check(flipped data byte) = %v, want ErrMismatch", blocks, err)
		}
		other := params
		other.RootHash = bytes.Repeat([]byte{1}, 32)
		if err := CheckRoot(bytes.NewReader(img), other); !errors.Is(err, ErrMismatch) {
			t.Errorf("%d blocks: CheckRoot(other root hash) = %v, want ErrMismatch", blocks, err)
		}
	}
}
