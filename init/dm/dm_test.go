package dm

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var verityTarget = Target{Start: 0, Length: 2048, Type: "verity",
	Params: "1 254:2 254:2 4096 4096 256 256 sha256 " + strings.Repeat("ab", 32) + " deadbeef"}

// TestIoctlNumbers pins the request numbers to linux/dm-ioctl.h's
// _IOWR(0xfd, n, struct dm_ioctl) as dmsetup's strace shows them.
func TestIoctlNumbers(t *testing.T) {
	for cmd, want := range map[uint]uint{
		cmdDevCreate: 0xc138fd03, cmdDevRemove: 0xc138fd04, cmdDevSuspend: 0xc138fd06,
		cmdTableLoad: 0xc138fd09, cmdTableStatus: 0xc138fd0c,
	} {
		if got := ioctlNumber(cmd); got != want {
			t.Errorf("ioctlNumber(%d) = %#x, want %#x", cmd, got, want)
		}
	}
}

// TestEncodeGolden pins the bytes of a table load and checks the fields at
// struct dm_ioctl's and struct dm_target_spec's offsets.
func TestEncodeGolden(t *testing.T) {
	b, err := request{name: "kiln-root", flags: flagReadOnly, targets: []Target{verityTarget}}.encode()
	if err != nil {
		t.Fatal(err)
	}
	u32 := func(off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
	specSize := align8(targetSpecSize + len(verityTarget.Params) + 1)
	for _, f := range []struct {
		name      string
		got, want uint32
	}{
		{"version[0]", u32(0), 4}, {"version[1]", u32(4), 0}, {"data_size", u32(12), uint32(headerSize + specSize)},
		{"data_start", u32(16), headerSize}, {"target_count", u32(20), 1}, {"flags", u32(28), flagReadOnly},
		{"spec.length", u32(headerSize + 8), 2048}, {"spec.next", u32(headerSize + 20), uint32(specSize)},
	} {
		if f.got != f.want {
			t.Errorf("encode: %s = %d, want %d", f.name, f.got, f.want)
		}
	}
	if got := cstring(b[48:]); got != "kiln-root" {
		t.Errorf("encode: name = %q", got)
	}
	if got := cstring(b[headerSize+24:]); got != "verity" {
		t.Errorf("encode: target_type = %q", got)
	}
	if got := cstring(b[headerSize+targetSpecSize:]); got != verityTarget.Params {
		t.Errorf("encode: params = %q", got)
	}
	golden := filepath.Join("testdata", "table_load.golden")
	dump := []byte(hex.Dump(b))
	if *update {
		os.WriteFile(golden, dump, 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if diff := cmp.Diff(string(want), string(dump)); diff != "" {
		t.Errorf("table load bytes mismatch (-want +got), go test -update if intended:\n%s", diff)
	}
}

func TestEncodeRefuses(t *testing.T) {
	for _, r := range []request{
		{name: ""},
		{name: "a/b"},
		{name: strings.Repeat("x", nameLen)},
		{name: "ok", uuid: strings.Repeat("u", uuidLen)},
		{name: "ok", targets: []Target{{Length: 1, Type: strings.Repeat("t", targetTypeLen)}}},
		{name: "ok", targets: []Target{{Length: 1, Type: "linear", Params: "a\x00b"}}},
	} {
		if _, err := r.encode(); !errors.Is(err, ErrInput) {
			t.Errorf("encode(%+v) = %v, want ErrInput", r, err)
		}
	}
}

// TestDecodeStatusReply decodes a reply laid out as the kernel's
// retrieve_status writes it: next is the offset from the data start.
func TestDecodeStatusReply(t *testing.T) {
	want := []Target{{Start: 0, Length: 100, Type: "linear", Params: "8:1 0"}, {Start: 100, Length: 2048, Type: "verity", Params: "V"}}
	b := make([]byte, 1024)
	off := 0
	for _, tg := range want {
		spec := b[headerSize+off:]
		binary.LittleEndian.PutUint64(spec[0:], tg.Start)
		binary.LittleEndian.PutUint64(spec[8:], tg.Length)
		copy(spec[24:], tg.Type)
		copy(spec[targetSpecSize:], tg.Params)
		off = align8(off + targetSpecSize + len(tg.Params) + 1)
		binary.LittleEndian.PutUint32(spec[20:], uint32(off))
	}
	binary.LittleEndian.PutUint32(b[offDataSize:], uint32(headerSize+off))
	binary.LittleEndian.PutUint32(b[offDataStart:], headerSize)
	binary.LittleEndian.PutUint32(b[offTargetCount:], 2)
	binary.LittleEndian.PutUint64(b[offDev:], 254<<8|3)
	r, err := decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, r.targets); diff != "" {
		t.Errorf("decode targets mismatch (-want +got):\n%s", diff)
	}
	if r.dev != 254<<8|3 {
		t.Errorf("decode dev = %#x", r.dev)
	}
	binary.LittleEndian.PutUint32(b[offDataSize:], 4096) // past the 1024-byte buffer
	if _, err := decode(b); err == nil {
		t.Error("decode accepted a data size past the buffer")
	}
}
