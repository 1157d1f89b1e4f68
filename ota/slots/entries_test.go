package slots

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/ota/bootentry"
	"kiln.dev/kiln/ota/internal/crashfs"
	"kiln.dev/kiln/ota/oplock"
	"kiln.dev/kiln/partitions"
)

// esp returns a fake ESP holding entries.
func esp(c *crashfs.Crasher, entries ...bootentry.Entry) *crashfs.ESP {
	files := map[string][]byte{"loader/loader.conf": []byte("timeout 0\n")}
	for _, e := range entries {
		files[path.Join(bootentry.Dir, e.FileName())] = bootentry.Render(e)
	}
	return crashfs.NewESP(files, c)
}

func fileNames(es []bootentry.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.FileName())
	}
	return out
}

func TestScanSkipsForeignAndReportsBroken(t *testing.T) {
	f := esp(nil, ent(1, a, ""), ent(2, b, "3-0"))
	f.WriteFile("loader/entries/other.conf", strings.NewReader("title other\n"))
	f.WriteFile("loader/entries/kiln-9.conf", strings.NewReader("title broken\n"))
	got, problems, err := Scan(f)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"kiln-1.conf", "kiln-2+3-0.conf"}, fileNames(got)); diff != "" {
		t.Errorf("Scan entries (-want +got):\n%s", diff)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], "kiln-9.conf") {
		t.Errorf("Scan problems = %q, want one about kiln-9.conf", problems)
	}
}

func TestTidy(t *testing.T) {
	f := esp(nil, ent(1, a, ""), ent(2, b, "1-2"), ent(2, b, ""), ent(3, a, "2-1"), ent(3, a, "0-1"))
	f.WriteFile("loader/entries/kiln-4+3-0.conf.new", strings.NewReader("torn"))
	removed, err := Tidy(f)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"kiln-4+3-0.conf.new", "kiln-2+1-2.conf", "kiln-3+2-1.conf"}, removed); diff != "" {
		t.Errorf("Tidy removed (-want +got):\n%s", diff)
	}
	got, _, _ := Scan(f)
	if diff := cmp.Diff([]string{"kiln-1.conf", "kiln-2.conf", "kiln-3+0-1.conf"}, fileNames(got)); diff != "" {
		t.Errorf("after Tidy (-want +got):\n%s", diff)
	}
	if again, _ := Tidy(f); again != nil {
		t.Errorf("Tidy twice removed %v, want nothing", again)
	}
}

// crashEach runs op against a fresh ESP made by mk for every crash point
// and several random outcomes of what was not yet durable, and calls check
// with the ESP as it is after power returns.
func crashEach(t *testing.T, mk func(*crashfs.Crasher) *crashfs.ESP, op func(*crashfs.ESP) error, check func(t *testing.T, after *crashfs.ESP)) {
	t.Helper()
	total := crashfs.NewCrasher(-1)
	if err := op(mk(total)); err != nil {
		t.Fatalf("op without a crash: %v", err)
	}
	for at := 0; at <= total.Ops; at++ {
		for seed := int64(0); seed < 16; seed++ {
			c := crashfs.NewCrasher(at)
			f := mk(c)
			err := op(f)
			if at < total.Ops && !errors.Is(err, crashfs.ErrCrashed) {
				t.Fatalf("crash at %d: op returned %v, want ErrCrashed", at, err)
			}
			after := f.AfterCrash(rand.New(rand.NewSource(seed)))
			t.Run(fmt.Sprintf("crash@%d/seed%d", at, seed), func(t *testing.T) { check(t, after) })
		}
	}
}

func TestBlessCrash(t *testing.T) {
	trial := ent(2, b, "2-1")
	crashEach(t,
		func(c *crashfs.Crasher) *crashfs.ESP { return esp(c, ent(1, a, ""), trial) },
		func(f *crashfs.ESP) error { _, err := Bless(f, trial); return err },
		func(t *testing.T, after *crashfs.ESP) {
			got, ok := crashfs.Boot(after)
			if !ok || got.Slot != b || got.Generation != 2 {
				t.Errorf("after a crash in Bless, systemd-boot boots %v (ok %v), want generation 2 on slot b; ESP: %s", got.FileName(), ok, after)
			}
		})
}

func TestMarkBadCrash(t *testing.T) {
	trial := ent(2, b, "2-1")
	crashEach(t,
		func(c *crashfs.Crasher) *crashfs.ESP { return esp(c, ent(1, a, ""), trial) },
		func(f *crashfs.ESP) error { _, err := MarkBad(f, trial); return err },
		func(t *testing.T, after *crashfs.ESP) {
			// Whatever survived, booting slot b and marking it bad again
			// (what the failing health check does on every boot) reaches
			// slot a within the tries left.
			for boot := 0; boot < 5; boot++ {
				got, ok := crashfs.Boot(after)
				if !ok {
					t.Fatalf("boot %d: no entry boots; ESP: %s", boot, after)
				}
				if got.Slot == a {
					return
				}
				if _, err := MarkBad(after, got); err != nil {
					t.Fatal(err)
				}
				Tidy(after)
			}
			t.Errorf("slot b still boots after 5 failed boots; ESP: %s", after)
		})
}

func TestRollBack(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "ota.lock")
	tests := []struct {
		name      string
		running   partitions.Slot
		entries   []bootentry.Entry
		to        partitions.Slot
		wantErr   string
		wantNames []string
	}{
		{name: "back to the previous committed slot", running: b, entries: []bootentry.Entry{ent(1, a, ""), ent(2, b, "")}, to: a,
			wantNames: []string{"kiln-1.conf", "kiln-2+0-0.conf"}},
		{name: "cancel an installed update", running: a, entries: []bootentry.Entry{ent(1, a, ""), ent(2, b, "3-0")}, to: a,
			wantNames: []string{"kiln-1.conf", "kiln-2+0-0.conf"}},
		{name: "during a trial", running: b, entries: []bootentry.Entry{ent(1, a, ""), ent(2, b, "2-1")}, to: a,
			wantNames: []string{"kiln-1.conf", "kiln-2+0-1.conf"}},
		{name: "already next", running: a, entries: []bootentry.Entry{ent(1, a, ""), ent(2, b, "0-3")}, to: a,
			wantNames: []string{"kiln-1.conf", "kiln-2+0-3.conf"}},
		{name: "no entry", running: a, entries: []bootentry.Entry{ent(1, a, "")}, to: b, wantErr: "has no boot entry"},
		{name: "failed slot", running: a, entries: []bootentry.Entry{ent(1, a, ""), ent(2, b, "0-3")}, to: b, wantErr: "tries are used up"},
		{name: "bad slot name", running: a, entries: []bootentry.Entry{ent(1, a, "")}, to: "c", wantErr: "not a or b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := esp(nil, tt.entries...)
			st := &Store{Path: filepath.Join(t.TempDir(), "state.json")}
			c := &Controller{ESP: f, Running: tt.running, State: st, LockPath: lock, Now: func() time.Time { return t0 }}
			err := c.RollBack(context.Background(), tt.to)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("RollBack(%s) = %v, want an error containing %q", tt.to, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("RollBack(%s) = %v", tt.to, err)
			}
			got, _, _ := Scan(f)
			if diff := cmp.Diff(tt.wantNames, fileNames(got)); diff != "" {
				t.Errorf("entries after RollBack (-want +got):\n%s", diff)
			}
			if next, _ := bootentry.Pick(got); next.Slot != tt.to {
				t.Errorf("after RollBack(%s) systemd-boot boots %s", tt.to, next.FileName())
			}
			r, _ := st.Load()
			if tt.name != "already next" {
				if _, ok := r.FailedGeneration(2); !ok {
					t.Errorf("rolled-back generation 2 is not recorded, so the pull schedule could reinstall it: %+v", r)
				}
			}
			// The console sees the result.
			cs, err := c.Slots(context.Background())
			if err != nil || len(cs) != 2 {
				t.Fatalf("Slots = %v, %v", cs, err)
			}
		})
	}
}

func TestRollBackBusy(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "ota.lock")
	l, err := oplock.Acquire(lock, "install of v2")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	c := &Controller{ESP: esp(nil, ent(1, a, ""), ent(2, b, "")), Running: b, LockPath: lock}
	if err := c.RollBack(context.Background(), a); !errors.Is(err, oplock.ErrBusy) {
		t.Errorf("RollBack during an install = %v, want ErrBusy", err)
	}
}

func TestRollBackCrash(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "ota.lock")
	crashEach(t,
		func(c *crashfs.Crasher) *crashfs.ESP { return esp(c, ent(1, a, ""), ent(2, b, "")) },
		func(f *crashfs.ESP) error {
			return (&Controller{ESP: f, Running: b, LockPath: lock}).RollBack(context.Background(), a)
		},
		func(t *testing.T, after *crashfs.ESP) {
			// Either slot may boot (the rollback did or did not happen), but
			// something always does, and it is a committed slot.
			got, ok := crashfs.Boot(after)
			if !ok || got.Counter != nil && got.Bad() {
				t.Errorf("after a crash in RollBack systemd-boot boots %v (ok %v); ESP: %s", got.FileName(), ok, after)
			}
		})
}

func TestStoreUpdate(t *testing.T) {
	st := &Store{Path: filepath.Join(t.TempDir(), "ota", "state.json")}
	r, err := st.Load()
	if err != nil || r.Slots != nil {
		t.Fatalf("Load of a missing file = %+v, %v", r, err)
	}
	if _, err := st.Update(func(r *Record) error { *r = Installing(*r, b, "v2", 2, t0); return nil }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if _, err := st.Update(func(r *Record) error { r.DataGeneration = 9; return boom }); !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	r, err = st.Load()
	if err != nil || r.Slot(b).Phase != PhaseInstalling || r.DataGeneration != 0 {
		t.Errorf("Load = %+v, %v; want slot b installing and nothing of the failed update", r, err)
	}
}

func TestFoldGRUB(t *testing.T) {
	f := esp(nil, ent(1, a, ""), ent(2, b, "3-0"))
	if renamed, err := FoldGRUB(f); err != nil || renamed != nil {
		t.Fatalf("FoldGRUB without grubenv = %v, %v, want nothing", renamed, err)
	}
	// GRUB counted two tries of generation 2 and a stale one of an older a.
	env, _ := bootentry.EncodeGRUBEnv(bootentry.GRUBTriesEnv(map[partitions.Slot]bootentry.Tries{
		b: {Generation: 2, Left: 1, Done: 2}, a: {Generation: 1, Left: 0, Done: 3},
	}))
	f.MkdirAll(bootentry.GRUBDir)
	if _, err := f.WriteFile(bootentry.GRUBEnvPath, strings.NewReader(string(env))); err != nil {
		t.Fatal(err)
	}
	renamed, err := FoldGRUB(f)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"kiln-2+3-0.conf → kiln-2+1-2.conf"}, renamed); diff != "" {
		t.Errorf("FoldGRUB renamed (-want +got):\n%s", diff)
	}
	got, _, _ := Scan(f)
	if diff := cmp.Diff([]string{"kiln-1.conf", "kiln-2+1-2.conf"}, fileNames(got)); diff != "" {
		t.Errorf("entries after FoldGRUB (-want +got):\n%s", diff)
	}
	if renamed, err := FoldGRUB(f); err != nil || renamed != nil {
		t.Errorf("second FoldGRUB = %v, %v, want nothing (idempotent)", renamed, err)
	}
	f.WriteFile(bootentry.GRUBEnvPath, strings.NewReader("garbage"))
	if _, err := FoldGRUB(f); err == nil {
		t.Error("FoldGRUB of a corrupt grubenv = nil error")
	}
}

func TestWriteKeepsTheGRUBSnippet(t *testing.T) {
	f := esp(nil)
	e := ent(5, b, "3-0")
	if err := Write(f, e); err != nil {
		t.Fatal(err)
	}
	got, err := f.ReadFile(bootentry.SlotGRUBPath(b))
	if err != nil || string(got) != string(bootentry.RenderGRUB(e.Blessed())) {
		t.Fatalf("snippet after Write = %q, %v", got, err)
	}
	if _, err := Bless(f, e); err != nil {
		t.Fatal(err)
	}
	if again, _ := f.ReadFile(bootentry.SlotGRUBPath(b)); string(again) != string(got) {
		t.Error("Bless changed the slot's GRUB snippet")
	}
}
