package bootentry

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/partitions"
)

// esp is the loader-relevant state of an ESP: the entry files and GRUB's records.
type esp struct {
	entries []Entry
	tries   map[partitions.Slot]Tries
}

func (e esp) clone() esp {
	out := esp{entries: append([]Entry(nil), e.entries...), tries: map[partitions.Slot]Tries{}}
	for k, v := range e.tries {
		out.tries[k] = v
	}
	return out
}

// names lists the entry files, sorted.
func (e esp) names() string {
	var n []string
	for _, x := range e.entries {
		n = append(n, string(x.Slot)+":"+x.FileName())
	}
	sort.Strings(n)
	return strings.Join(n, " ")
}

// replace models slots.Replace: write new, remove old (interrupted: keep both).
func (e *esp) replace(old, new Entry, interrupted bool) {
	var out []Entry
	for _, x := range e.entries {
		if x.FileName() == old.FileName() && x.Slot == old.Slot && !interrupted {
			continue
		}
		if x.FileName() == new.FileName() && x.Slot == new.Slot {
			continue
		}
		out = append(out, x)
	}
	e.entries = append(out, new)
}

// loader boots an ESP: systemd-boot renames the entry; GRUB saves its record
// and Linux then folds it into the file names (ota/slots.FoldGRUB).
type loader func(*esp) (Entry, bool)

func sdBoot(e *esp) (Entry, bool) {
	p, ok := Pick(e.entries)
	if !ok {
		return p, false
	}
	at := p.Attempted()
	e.replace(p, at, false)
	return at, true
}

func grubBoot(e *esp) (Entry, bool) {
	at, tries, ok := PickGRUB(e.entries, e.tries)
	if !ok {
		return at, false
	}
	e.tries = tries
	// Linux at the next start: every entry takes its effective name.
	for _, x := range append([]Entry(nil), e.entries...) {
		e.replace(x, Effective(x, e.tries), false)
	}
	return at, true
}

// event is one step of an appliance's life.
type event struct {
	name string
	do   func(e *esp, l loader, booted *Entry, gen *int) string // returns what happened
}

func eventsForModel() []event {
	install := func(tries int) event {
		return event{fmt.Sprintf("install+%d", tries), func(e *esp, _ loader, booted *Entry, gen *int) string {
			// Into the slot that is not running (or b when nothing ran).
			target := partitions.SlotB
			if booted.Slot == partitions.SlotB {
				target = partitions.SlotA
			}
			var keep []Entry
			for _, x := range e.entries {
				if x.Slot != target {
					keep = append(keep, x)
				}
			}
			*gen++
			e.entries = append(keep, Entry{Generation: *gen, Slot: target, Version: "v", RootUUID: "U", Counter: &Counter{Left: tries}})
			return ""
		}}
	}
	boot := event{"boot", func(e *esp, l loader, booted *Entry, _ *int) string {
		b, ok := l(e)
		if !ok {
			return "nothing"
		}
		*booted = b
		return fmt.Sprintf("%s:%d", b.Slot, b.Generation)
	}}
	change := func(name string, interrupted bool, f func(Entry) Entry) event {
		return event{name, func(e *esp, _ loader, booted *Entry, _ *int) string {
			if booted.Generation == 0 || booted.Counter == nil {
				return ""
			}
			// The running entry as the files now name it.
			for _, x := range e.entries {
				if x.FileName() == booted.FileName() && x.Slot == booted.Slot {
					e.replace(x, f(x), interrupted)
					*booted = f(x)
					return ""
				}
			}
			return ""
		}}
	}
	markBad := func(x Entry) Entry {
		x.Counter = &Counter{Left: 0, Done: x.Counter.Done}
		return x
	}
	return []event{
		install(1), install(3), boot,
		change("bless", false, Entry.Blessed),
		change("bless-interrupted", true, Entry.Blessed),
		change("markbad", false, markBad),
		change("markbad-interrupted", true, markBad),
	}
}

// TestGRUBMatchesSystemdBoot model-checks the GRUB path against systemd-boot:
// for every sequence of installs, boots, blesses and mark-bads (complete or
// interrupted) up to depth 6 from a fresh image, both loaders boot the same
// generation from the same slot every time, and once Linux has folded GRUB's
// records the entry files are the same.
func TestGRUBMatchesSystemdBoot(t *testing.T) {
	evs := eventsForModel()
	start := esp{entries: []Entry{{Generation: 1, Slot: partitions.SlotA, Version: "v", RootUUID: "U"}}}
	const depth = 6
	type run struct {
		e      esp
		booted Entry
		gen    int
	}
	checked := 0
	var walk func(sd, gr run, path []string)
	walk = func(sd, gr run, path []string) {
		checked++
		if len(path) == depth {
			return
		}
		for _, ev := range evs {
			s, g := run{sd.e.clone(), sd.booted, sd.gen}, run{gr.e.clone(), gr.booted, gr.gen}
			a := ev.do(&s.e, sdBoot, &s.booted, &s.gen)
			b := ev.do(&g.e, grubBoot, &g.booted, &g.gen)
			p := append(append([]string(nil), path...), ev.name)
			if a != b {
				t.Fatalf("after %v: systemd-boot booted %s, GRUB %s", p, a, b)
			}
			if s.e.names() != g.e.names() {
				t.Fatalf("after %v: entry files differ:\nsystemd-boot %s\nGRUB         %s", p, s.e.names(), g.e.names())
			}
			walk(s, g, p)
		}
	}
	walk(run{e: start.clone(), gen: 1}, run{e: start.clone(), gen: 1}, nil)
	t.Logf("%d states compared", checked)
}

func TestEffective(t *testing.T) {
	a := partitions.SlotA
	tries := map[partitions.Slot]Tries{a: {Generation: 7, Left: 1, Done: 2}}
	tests := []struct {
		in, want Entry
	}{
		{Entry{Generation: 7, Slot: a, Counter: &Counter{Left: 3, Done: 0}}, Entry{Generation: 7, Slot: a, Counter: &Counter{Left: 1, Done: 2}}},
		{Entry{Generation: 7, Slot: a, Counter: &Counter{Left: 0, Done: 1}}, Entry{Generation: 7, Slot: a, Counter: &Counter{Left: 0, Done: 1}}}, // marked bad: never counted
		{Entry{Generation: 7, Slot: a}, Entry{Generation: 7, Slot: a}},                                                                           // committed: never counted
		{Entry{Generation: 8, Slot: a, Counter: &Counter{Left: 3}}, Entry{Generation: 8, Slot: a, Counter: &Counter{Left: 3}}},                   // a newer install
		{Entry{Generation: 7, Slot: partitions.SlotB, Counter: &Counter{Left: 3}}, Entry{Generation: 7, Slot: partitions.SlotB, Counter: &Counter{Left: 3}}},
	}
	for _, tt := range tests {
		if got := Effective(tt.in, tries); !cmp.Equal(got, tt.want) {
			t.Errorf("Effective(%s) = %s, want %s", tt.in.FileName(), got.FileName(), tt.want.FileName())
		}
	}
}

func TestGRUBEnvRoundTrip(t *testing.T) {
	tries := map[partitions.Slot]Tries{partitions.SlotA: {7, 2, 1}, partitions.SlotB: {6, 0, 3}}
	env := GRUBTriesEnv(tries)
	env["other"] = "a\\b\nc = d"
	b, err := EncodeGRUBEnv(env)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != GRUBEnvSize || !bytes.HasSuffix(b, []byte("###")) {
		t.Fatalf("EncodeGRUBEnv: %d bytes, want %d ending in '#' padding", len(b), GRUBEnvSize)
	}
	got, err := DecodeGRUBEnv(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(env, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(tries, ParseGRUBTries(got)); diff != "" {
		t.Errorf("ParseGRUBTries (-want +got):\n%s", diff)
	}
	// GRUB's own layout: what grub-editenv writes.
	grub := []byte("# GRUB Environment Block\nkiln_a_tgen=7\nkiln_a_tleft=2\nkiln_a_tdone=1\nkiln_b_tgen=x\n" + strings.Repeat("#", 900))
	if got := ParseGRUBTries(mustDecode(t, grub)); !cmp.Equal(got, map[partitions.Slot]Tries{partitions.SlotA: {7, 2, 1}}) {
		t.Errorf("ParseGRUBTries(grub-editenv block) = %v", got)
	}
	if _, err := DecodeGRUBEnv([]byte("not an env")); err == nil {
		t.Error("DecodeGRUBEnv without the signature = nil error")
	}
	if _, err := EncodeGRUBEnv(map[string]string{"big": strings.Repeat("x", 1100)}); err == nil {
		t.Error("EncodeGRUBEnv of 1100 bytes = nil error, want too large")
	}
}

func mustDecode(t *testing.T, b []byte) map[string]string {
	t.Helper()
	env, err := DecodeGRUBEnv(b)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func FuzzDecodeGRUBEnv(f *testing.F) {
	b, _ := EncodeGRUBEnv(map[string]string{"kiln_a_tgen": "3", "x": "a\\b"})
	f.Add(b)
	f.Add([]byte("# GRUB Environment Block\nk=\\"))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := DecodeGRUBEnv(b)
		if err != nil {
			return
		}
		ParseGRUBTries(env)
	})
}

// TestGRUBConfigGolden keeps grub.cfg and an entry's snippet under review; the
// SeaBIOS tests in qemu/biostest run them.
func TestGRUBConfigGolden(t *testing.T) {
	e := Entry{Generation: 7, Slot: partitions.SlotB, Version: "2.1 'rc'", RootUUID: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", Counter: &Counter{Left: 3}}
	for name, got := range map[string][]byte{"grub.cfg": GRUBConfig(), "slot-b-grub.cfg": RenderGRUB(e)} {
		golden := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (go test -update writes it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s (go test -update rewrites it)", name, golden)
		}
	}
	if !strings.Contains(string(RenderGRUB(e)), `set kiln_b_title='kiln 2.1 '\''rc'\'' (slot b)'`) {
		t.Errorf("snippet does not quote the title for GRUB:\n%s", RenderGRUB(e))
	}
}
