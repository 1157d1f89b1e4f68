package crashfs

import (
	"bytes"
	"errors"
	"math/rand"
	"strings"
	"testing"
)

func TestRenameOutcomes(t *testing.T) {
	outcomes := func(crashAt int) map[string]bool {
		seen := map[string]bool{}
		for seed := int64(0); seed < 64; seed++ {
			e := NewESP(map[string][]byte{"d/old": []byte("x")}, NewCrasher(crashAt))
			e.Rename("d/old", "d/new")
			f := e.AfterCrash(rand.New(rand.NewSource(seed))).Files()
			o, oldOK := f["d/old"]
			n, newOK := f["d/new"]
			switch {
			case newOK && len(n) == 0:
				seen["empty new"] = true
			case oldOK && newOK && bytes.Equal(o, n):
				seen["both"] = true
			case oldOK:
				seen["old"] = true
			case newOK:
				seen["new"] = true
			default:
				seen["neither"] = true
			}
		}
		return seen
	}
	// Crash between the directory change and the fsync of the file: vfat
	// may keep an empty new entry, and lose both names.
	if got := outcomes(1); !got["old"] || !got["empty new"] || !got["neither"] {
		t.Errorf("crash inside Rename left %v, want old, empty new and neither among them", got)
	}
	// After Rename returned the new name is durable with its bytes.
	if got := outcomes(-1); got["old"] || got["empty new"] || got["neither"] || !got["new"] || !got["both"] {
		t.Errorf("crash after Rename left %v, want new or both only", got)
	}
}

func TestSyncDirMakesDurable(t *testing.T) {
	e := NewESP(map[string][]byte{"d/a": []byte("a")}, nil)
	e.WriteFile("d/b", strings.NewReader("b"))
	e.Remove("d/a")
	if err := e.SyncDir("d"); err != nil {
		t.Fatal(err)
	}
	for seed := int64(0); seed < 8; seed++ {
		f := e.AfterCrash(rand.New(rand.NewSource(seed))).Files()
		if _, ok := f["d/a"]; ok || !bytes.Equal(f["d/b"], []byte("b")) {
			t.Fatalf("synced changes lost: %v", f)
		}
	}
}

func TestCrasherAndDisk(t *testing.T) {
	c := NewCrasher(2)
	d := NewDisk(make([]byte, 3*BlockSize), c)
	if _, err := d.WriteAt(bytes.Repeat([]byte{1}, BlockSize), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt([]byte{2}, BlockSize); !errors.Is(err, ErrCrashed) || !c.Crashed() {
		t.Fatalf("third operation = %v, want ErrCrashed", err)
	}
	after := d.AfterCrash(rand.New(rand.NewSource(1))).Bytes()
	if after[0] != 1 || after[BlockSize] != 0 {
		t.Errorf("after the crash: block 0 = %d (synced), block 1 = %d (never written)", after[0], after[BlockSize])
	}
}
