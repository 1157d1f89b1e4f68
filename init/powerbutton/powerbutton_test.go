package powerbutton

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func event(typ, code uint16, val int32) []byte {
	b := make([]byte, eventSize)
	binary.LittleEndian.PutUint16(b[16:], typ)
	binary.LittleEndian.PutUint16(b[18:], code)
	binary.LittleEndian.PutUint32(b[20:], uint32(val))
	return b
}

func TestPresses(t *testing.T) {
	var in bytes.Buffer
	in.Write(event(evKey, keyPower, 1)) // press
	in.Write(event(0, 0, 0))            // SYN_REPORT
	in.Write(event(evKey, keyPower, 0)) // release
	in.Write(event(evKey, 30, 1))       // KEY_A
	in.Write(event(evKey, keyPower, 2)) // autorepeat
	in.Write(event(evKey, keyPower, 1)) // press
	n := 0
	// Feed it in odd-sized pieces, as a read may split events.
	r := &chunkReader{b: in.Bytes(), n: 7}
	if err := Presses(r, func() { n++ }); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("presses = %d, want 2", n)
	}
}

type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := min(c.n, len(c.b), len(p))
	copy(p, c.b[:k])
	c.b = c.b[k:]
	if len(c.b) == 0 {
		return k, io.EOF
	}
	return k, nil
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	for ev, name := range map[string]string{"event0": "Power Button", "event1": "AT Translated Set 2 keyboard", "event2": "Power Button"} {
		p := filepath.Join(dir, "class", ev, "device")
		os.MkdirAll(p, 0o755)
		os.WriteFile(filepath.Join(p, "name"), []byte(name+"\n"), 0o644)
	}
	os.MkdirAll(filepath.Join(dir, "class", "mouse0"), 0o755)
	got, err := Find(filepath.Join(dir, "class"), "/dev")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/dev/input/event0", "/dev/input/event2"}, got); diff != "" {
		t.Errorf("Find mismatch (-want +got):\n%s", diff)
	}
}
