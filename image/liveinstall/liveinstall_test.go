package liveinstall

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/image/flash"
)

// fakeImage is a 4 MiB image shaped like kiln's: a partition table at the
// start, a small ESP, the same root at two offsets, a backup table at the end.
func fakeImage(t *testing.T) (img, root []byte, roots []int64) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	fill := func(b []byte) {
		for i := range b {
			b[i] = byte(r.UintN(255) + 1)
		}
	}
	img = make([]byte, 4<<20)
	root = make([]byte, 300<<10)
	fill(root)
	fill(img[:3000])             // MBR + GPT: less than a chunk
	fill(img[200<<10 : 520<<10]) // ESP: 5 chunks
	img[700<<10] = 1             // one byte alone in its chunk
	roots = []int64{1 << 20, 2 << 20}
	for _, o := range roots {
		copy(img[o:], root)
	}
	fill(img[len(img)-16<<10:])
	return img, root, roots
}

func TestBuildInstallRoundTrip(t *testing.T) {
	img, root, roots := fakeImage(t)
	var data bytes.Buffer
	m, err := Build(bytes.NewReader(img), int64(len(img)), bytes.NewReader(root), int64(len(root)), roots, &data)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)
	if m.SHA256 != hex.EncodeToString(sum[:]) || m.Size != int64(len(img)) {
		t.Errorf("Build: size %d sha256 %s, want %d %x", m.Size, m.SHA256, len(img), sum)
	}
	c := int64(chunk)
	want := []Extent{
		{Offset: 0, Length: c, Source: SourceData},
		{Offset: 3 * c, Length: 6 * c, Source: SourceData, At: c}, // 192-576 KiB: the ESP's chunks
		{Offset: 10 * c, Length: c, Source: SourceData, At: 7 * c},
		{Offset: 1 << 20, Length: int64(len(root)), Source: SourceRoot},
		{Offset: 2 << 20, Length: int64(len(root)), Source: SourceRoot},
		{Offset: 4<<20 - c, Length: c, Source: SourceData, At: 8 * c},
	}
	for i, e := range want {
		sum := sha256.Sum256(img[e.Offset : e.Offset+e.Length])
		want[i].SHA256 = hex.EncodeToString(sum[:])
	}
	if diff := cmp.Diff(want, m.Extents); diff != "" {
		t.Errorf("Build extents mismatch (-want +got):\n%s", diff)
	}
	if data.Len() != 9*chunk {
		t.Errorf("Build wrote %d data bytes, want %d", data.Len(), 9*chunk)
	}
	parsed, err := Parse(m.Marshal())
	if err != nil {
		t.Fatalf("Parse(Marshal()): %v\n%s", err, m.Marshal())
	}
	if diff := cmp.Diff(m, parsed); diff != "" {
		t.Errorf("Parse(Marshal()) mismatch (-want +got):\n%s", diff)
	}

	// The disk is larger than the image and full of old bytes.
	disk := filepath.Join(t.TempDir(), "disk")
	old := bytes.Repeat([]byte{0xee}, 6<<20)
	if err := os.WriteFile(disk, old, 0o644); err != nil {
		t.Fatal(err)
	}
	dev, err := flash.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	var phases []string
	res, err := Install(context.Background(), dev, parsed, map[string]io.ReaderAt{
		SourceData: bytes.NewReader(data.Bytes()), SourceRoot: bytes.NewReader(root),
	}, Options{DevSize: int64(len(old)), Report: func(p flash.Progress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.SHA256 != m.SHA256 || res.Bytes != m.Size {
		t.Errorf("Install = %+v, want %d bytes sha256 %s", res, m.Size, m.SHA256)
	}
	if strings.Join(phases, " ") != "writing verifying" {
		t.Errorf("Install reported phases %v, want writing then verifying", phases)
	}
	got, _ := os.ReadFile(disk)
	if !bytes.Equal(got[:len(img)], img) {
		t.Error("the disk does not hold the image")
	}
	if !allZero(got[len(got)-1<<20:]) || !bytes.Equal(got[len(img):len(got)-1<<20], old[len(img):len(got)-1<<20]) {
		t.Error("the disk's last MiB is not zeroed, or the bytes between image and last MiB changed")
	}

	// A damaged medium is caught by the read-back.
	bad := bytes.Clone(data.Bytes())
	bad[5*chunk] ^= 1
	_, err = Install(context.Background(), dev, parsed, map[string]io.ReaderAt{
		SourceData: bytes.NewReader(bad), SourceRoot: bytes.NewReader(root),
	}, Options{})
	if !errors.Is(err, flash.ErrVerify) {
		t.Errorf("Install from a damaged DISK.DAT = %v, want ErrVerify", err)
	}
	// A disk that says it zeroed but did not is caught by the zero check.
	if err := os.WriteFile(disk, old, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Install(context.Background(), lyingZeroer{dev}, parsed, map[string]io.ReaderAt{
		SourceData: bytes.NewReader(data.Bytes()), SourceRoot: bytes.NewReader(root),
	}, Options{})
	if !errors.Is(err, flash.ErrVerify) || !strings.Contains(err.Error(), "non-zero bytes") {
		t.Errorf("Install onto a disk that does not zero = %v, want ErrVerify for non-zero bytes", err)
	}
	_, err = Install(context.Background(), dev, parsed, map[string]io.ReaderAt{SourceData: bytes.NewReader(data.Bytes())}, Options{})
	if err == nil || !strings.Contains(err.Error(), `"root"`) {
		t.Errorf("Install without the root source = %v, want an error naming it", err)
	}
}

// lyingZeroer claims to zero ranges and leaves them as they were.
type lyingZeroer struct{ *flash.BlockDevice }

func (lyingZeroer) ZeroRange(off, n int64) error { return nil }

func TestBuildRefusesASlotWithoutTheRoot(t *testing.T) {
	img, root, roots := fakeImage(t)
	img[roots[1]+1234] ^= 0xff
	_, err := Build(bytes.NewReader(img), int64(len(img)), bytes.NewReader(root), int64(len(root)), roots, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "differs from the root squashfs") {
		t.Errorf("Build with a damaged slot = %v, want it refused", err)
	}
	_, err = Build(bytes.NewReader(img), int64(len(img)), bytes.NewReader(root), int64(len(root)), []int64{1 << 20, 1<<20 + 4096}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("Build with overlapping slots = %v, want it refused", err)
	}
}

func TestParseRefuses(t *testing.T) {
	h := strings.Repeat("ab", 32)
	x := `, "sha256": "` + h + `"}`
	for _, tt := range []struct{ in, want string }{
		{`{`, "malformed install map"},
		{`{"size": 1000, "sha256": "` + h + `"}`, "size 1000"},
		{`{"size": 1024, "sha256": "abc"}`, "not 64 hex digits"},
		{`{"size": 1024, "sha256": "` + h + `", "extents": [{"offset": 0, "length": 512, "source": "x"` + x + `]}`, `source "x"`},
		{`{"size": 1024, "sha256": "` + h + `", "extents": [{"offset": 0, "length": 512, "source": "data"}]}`, `extent 0 has sha256 ""`},
		{`{"size": 1024, "sha256": "` + h + `", "extents": [{"offset": 0, "length": 0, "source": "data"` + x + `]}`, "length 0"},
		{`{"size": 1024, "sha256": "` + h + `", "extents": [{"offset": 512, "length": 1024, "source": "data"` + x + `]}`, "past the image"},
		{`{"size": 4096, "sha256": "` + h + `", "extents": [{"offset": 512, "length": 1024, "source": "data"` + x + `, {"offset": 1024, "length": 512, "source": "root"` + x + `]}`, "overlaps"},
	} {
		if _, err := Parse([]byte(tt.in)); err == nil || !errors.Is(err, ErrMap) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%s) = %v, want ErrMap saying %q", tt.in, err, tt.want)
		}
	}
}
