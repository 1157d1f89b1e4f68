package bootentry

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/partitions"
)

var update = flag.Bool("update", false, "rewrite golden files")

const uuidA = "0A1B2C3D-4E5F-5A6B-8C7D-8E9FA0B1C2D3"

// verityA is a kiln.verity value (root hash, data blocks, salt).
const verityA = "6c0d4e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5:2500:a1b2c3d4"

func TestRenderGolden(t *testing.T) {
	e := Entry{Generation: 1, Slot: partitions.SlotA, Version: "0.1.0", RootUUID: uuidA, Verity: verityA}
	got := Render(e)
	golden := filepath.Join("testdata", "kiln-1.conf")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("Render mismatch (-want +got):\n%s", diff)
	}
}

func TestRenderParseRoundTrip(t *testing.T) {
	for _, e := range []Entry{
		{Generation: 1, Slot: partitions.SlotA, Version: "0.1.0", RootUUID: uuidA},
		{Generation: 12, Slot: partitions.SlotB, Version: "2026.11", RootUUID: uuidA, Verity: verityA, Counter: &Counter{Left: 3}},
		{Generation: 99999999, Slot: partitions.SlotB, Version: "x", RootUUID: uuidA, Counter: &Counter{Left: 0, Done: 3}},
	} {
		t.Run(e.FileName(), func(t *testing.T) {
			got, err := Parse(e.FileName(), Render(e))
			if err != nil {
				t.Fatalf("Parse(Render(%+v)): %v", e, err)
			}
			if diff := cmp.Diff(e, got); diff != "" {
				t.Errorf("Parse(Render) mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRefusesMalformedVerity(t *testing.T) {
	e := Entry{Generation: 3, Slot: partitions.SlotA, Version: "v", RootUUID: uuidA, Verity: "abc:1:-"}
	if _, err := Parse(e.FileName(), Render(e)); err == nil || !strings.Contains(err.Error(), "kiln-3.conf: kiln.verity=\"abc:1:-\": malformed") {
		t.Errorf("Parse(entry with kiln.verity=abc:1:-) = %v, want an error naming the file and the parameter", err)
	}
}

func TestParseFileName(t *testing.T) {
	for _, tc := range []struct {
		in      string
		gen     int
		counter *Counter
		err     bool
	}{
		{in: "kiln-1.conf", gen: 1},
		{in: "kiln-7+3.conf", gen: 7, counter: &Counter{Left: 3}},
		{in: "kiln-7+3-0.conf", gen: 7, counter: &Counter{Left: 3}},
		{in: "kiln-7+2-1.conf", gen: 7, counter: &Counter{Left: 2, Done: 1}},
		{in: "kiln-7+0-3.conf", gen: 7, counter: &Counter{Done: 3}},
		{in: "kiln-0.conf", err: true},
		{in: "kiln-01.conf", err: true},
		{in: "kiln-x.conf", err: true},
		{in: "kiln-1+x.conf", err: true},
		{in: "kiln-1+1-.conf", err: true},
		{in: "debian-1.conf", err: true},
		{in: "kiln-1.conf.bak", err: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			gen, c, err := ParseFileName(tc.in)
			if tc.err {
				if !errors.Is(err, ErrNotKiln) {
					t.Fatalf("ParseFileName(%q) error = %v, want ErrNotKiln", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFileName(%q): %v", tc.in, err)
			}
			if gen != tc.gen || !cmp.Equal(c, tc.counter) {
				t.Errorf("ParseFileName(%q) = %d, %+v, want %d, %+v", tc.in, gen, c, tc.gen, tc.counter)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	good := Render(Entry{Generation: 2, Slot: partitions.SlotB, Version: "v", RootUUID: uuidA})
	for _, tc := range []struct{ name, file, data string }{
		{"version mismatch", "kiln-3.conf", string(good)},
		{"no options", "kiln-2.conf", "title kiln v\nversion 00000002\nlinux /kiln/b/vmlinuz\n"},
		{"bad slot", "kiln-2.conf", "version 00000002\nlinux /kiln/c/vmlinuz\noptions root=PARTUUID=x kiln.slot=c\n"},
		{"wrong kernel", "kiln-2.conf", "version 00000002\nlinux /kiln/a/vmlinuz\noptions root=PARTUUID=x kiln.slot=b\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if e, err := Parse(tc.file, []byte(tc.data)); err == nil {
				t.Errorf("Parse(%q) = %+v, want error", tc.file, e)
			}
		})
	}
}

func TestPick(t *testing.T) {
	c := func(l, d int) *Counter { return &Counter{Left: l, Done: d} }
	e := func(gen int, s partitions.Slot, cnt *Counter) Entry {
		return Entry{Generation: gen, Slot: s, RootUUID: uuidA, Counter: cnt}
	}
	a, b := partitions.SlotA, partitions.SlotB
	for _, tc := range []struct {
		name    string
		entries []Entry
		want    string // file name, "" for none
	}{
		{"none", nil, ""},
		{"fresh image", []Entry{e(1, a, nil)}, "kiln-1.conf"},
		{"new generation with tries wins", []Entry{e(1, a, nil), e(2, b, c(3, 0))}, "kiln-2+3-0.conf"},
		{"new generation tried twice still wins", []Entry{e(1, a, nil), e(2, b, c(1, 2))}, "kiln-2+1-2.conf"},
		{"used-up tries fall back", []Entry{e(1, a, nil), e(2, b, c(0, 3))}, "kiln-1.conf"},
		{"order of input irrelevant", []Entry{e(2, b, c(0, 1)), e(1, a, nil)}, "kiln-1.conf"},
		{"only bad entries: newest bad", []Entry{e(1, a, c(0, 3)), e(2, b, c(0, 1))}, "kiln-2+0-1.conf"},
		{"generation 10 beats 9", []Entry{e(9, a, nil), e(10, b, nil)}, "kiln-10.conf"},
		{"committed newest", []Entry{e(3, a, nil), e(2, b, nil)}, "kiln-3.conf"},
		{"same generation: more tries left first", []Entry{e(4, a, c(1, 2)), e(4, a, c(2, 1))}, "kiln-4+2-1.conf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Pick(tc.entries)
			name := ""
			if ok {
				name = got.FileName()
			}
			if name != tc.want {
				t.Errorf("Pick(%v) = %q, want %q", names(tc.entries), name, tc.want)
			}
		})
	}
}

// TestBootSequence walks the measured systemd-boot behaviour: a "+1-0" entry that
// fails once falls back to the older generation on the next boot.
func TestBootSequence(t *testing.T) {
	old := Entry{Generation: 1, Slot: partitions.SlotA, RootUUID: uuidA}
	next := Entry{Generation: 2, Slot: partitions.SlotB, RootUUID: uuidA, Counter: &Counter{Left: 1}}
	entries := []Entry{old, next}
	var booted []string
	for range 3 {
		got, _ := Pick(entries)
		booted = append(booted, got.FileName())
		for i := range entries {
			if entries[i].FileName() == got.FileName() {
				entries[i] = got.Attempted()
			}
		}
	}
	want := []string{"kiln-2+1-0.conf", "kiln-1.conf", "kiln-1.conf"}
	if diff := cmp.Diff(want, booted); diff != "" {
		t.Errorf("boot sequence mismatch (-want +got):\n%s", diff)
	}
	if got := next.Attempted().Blessed().FileName(); got != "kiln-2.conf" {
		t.Errorf("Blessed().FileName() = %q, want %q", got, "kiln-2.conf")
	}
}

func TestVersionCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"00000002", "00000010", -1},
		{"00000010", "00000010", 0},
		{"1.2", "1.10", -1},
		{"1~rc1", "1", -1},
		{"1", "1~rc1", 1},
		{"1-2", "1.1", -1},
		{"1.1", "1-2", 1},
		{"1^p1", "1", 1},
		{"123abc", "123ab", 1},
		{"1a", "12", -1},
		{"1.0", "1", 1},
		{"", "1", -1},
		{"kiln-2+1-0.conf", "kiln-10.conf", -1},
		{"007", "7", 0},
	} {
		t.Run(tc.a+"_vs_"+tc.b, func(t *testing.T) {
			got := VersionCompare(tc.a, tc.b)
			if sign(got) != tc.want {
				t.Errorf("VersionCompare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
			}
			if back := VersionCompare(tc.b, tc.a); sign(back) != -tc.want {
				t.Errorf("VersionCompare(%q, %q) = %d, want %d", tc.b, tc.a, back, -tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("kiln-1+3-0.conf", string(Render(Entry{Generation: 1, Slot: partitions.SlotA, RootUUID: uuidA})))
	f.Fuzz(func(t *testing.T, name, data string) {
		e, err := Parse(name, []byte(data))
		if err != nil {
			return
		}
		if _, err := Parse(e.FileName(), Render(e)); err != nil {
			t.Errorf("re-parsing a parsed entry %+v: %v", e, err)
		}
	})
}

func FuzzVersionCompare(f *testing.F) {
	f.Add("1.2~rc1-3", "1.2^4")
	f.Fuzz(func(t *testing.T, a, b string) {
		if x, y := sign(VersionCompare(a, b)), sign(VersionCompare(b, a)); x != -y {
			t.Errorf("VersionCompare(%q, %q) = %d but reverse = %d", a, b, x, y)
		}
	})
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func names(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.FileName())
	}
	return out
}
