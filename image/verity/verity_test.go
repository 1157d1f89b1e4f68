package verity

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

func data(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestMatchesVeritysetup builds trees of one level, two and three levels and
// compares root hash and tree bytes with veritysetup format --no-superblock,
// then has veritysetup verify the tree and refuse it after a flipped data byte.
func TestMatchesVeritysetup(t *testing.T) {
	vs, err := exec.LookPath("veritysetup")
	if err != nil {
		t.Skip("skipping: veritysetup not installed (apt-get install cryptsetup-bin)")
	}
	salt := []byte{0xde, 0xad, 0xbe, 0xef}
	for _, blocks := range []int{1, 128, 129, 5000, 128*128 + 1} {
		dir := t.TempDir()
		d := data(blocks * BlockSize)
		dp, hp := filepath.Join(dir, "data"), filepath.Join(dir, "hash")
		os.WriteFile(dp, d, 0o644)
		tree, err := Build(bytes.NewReader(d), int64(len(d)), salt)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(vs, "format", "--no-superblock", "--salt=deadbeef", dp, hp).CombinedOutput()
		if err != nil {
			t.Fatalf("veritysetup format: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`Root hash:\s+([0-9a-f]+)`).FindSubmatch(out)
		if m == nil || string(m[1]) != tree.RootHex() {
			t.Errorf("%d blocks: root hash %s, veritysetup says:\n%s", blocks, tree.RootHex(), out)
		}
		want, _ := os.ReadFile(hp)
		if !bytes.Equal(tree.Hash, want) {
			t.Errorf("%d blocks: tree is %d bytes, veritysetup's %d, contents differ", blocks, len(tree.Hash), len(want))
		}
		os.WriteFile(hp, tree.Hash, 0o644)
		if out, err := exec.Command(vs, "verify", "--no-superblock", "--salt=deadbeef", dp, hp, tree.RootHex()).CombinedOutput(); err != nil {
			t.Errorf("%d blocks: veritysetup verify of our tree: %v\n%s", blocks, err, out)
		}
		d[len(d)/2] ^= 1
		os.WriteFile(dp, d, 0o644)
		if out, err := exec.Command(vs, "verify", "--no-superblock", "--salt=deadbeef", dp, hp, tree.RootHex()).CombinedOutput(); err == nil {
			t.Errorf("%d blocks: veritysetup verify passed a flipped byte:\n%s", blocks, out)
		}
	}
}

func TestBuildErrorsAndTable(t *testing.T) {
	for _, n := range []int64{0, 100, BlockSize + 1} {
		if _, err := Build(bytes.NewReader(make([]byte, n)), n, nil); !errors.Is(err, ErrSize) {
			t.Errorf("Build(%d bytes) = %v, want ErrSize", n, err)
		}
	}
	tree, err := Build(bytes.NewReader(make([]byte, 2*BlockSize)), 2*BlockSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := tree.Table("/dev/vda2", 2)
	want := "0 16 verity 1 /dev/vda2 /dev/vda2 4096 4096 2 2 sha256 " + tree.RootHex() + " -"
	if got != want {
		t.Errorf("Table = %q, want %q", got, want)
	}
}
