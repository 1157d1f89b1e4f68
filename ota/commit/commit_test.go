package commit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/ota/bootentry"
	"kiln.dev/kiln/ota/internal/crashfs"
	"kiln.dev/kiln/ota/slots"
	"kiln.dev/kiln/partitions"
)

var (
	a  = partitions.SlotA
	b  = partitions.SlotB
	t0 = time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
)

func ent(gen int, s partitions.Slot, c *bootentry.Counter) bootentry.Entry {
	return bootentry.Entry{Generation: gen, Slot: s, Version: fmt.Sprintf("v%d", gen), RootUUID: "AAAAAAAA-0000-5000-8000-00000000000" + string(s[0]-'a'+'1'), Counter: c}
}

func esp(entries ...bootentry.Entry) *crashfs.ESP {
	files := map[string][]byte{}
	for _, e := range entries {
		files[path.Join(bootentry.Dir, e.FileName())] = bootentry.Render(e)
	}
	return crashfs.NewESP(files, nil)
}

func entryNames(t *testing.T, f *crashfs.ESP) []string {
	t.Helper()
	es, _, err := slots.Scan(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.FileName())
	}
	return out
}

func TestCommitPasses(t *testing.T) {
	trial := ent(2, b, &bootentry.Counter{Left: 2, Done: 1})
	f := esp(ent(1, a, nil), trial)
	st := &slots.Store{Path: filepath.Join(t.TempDir(), "state.json")}
	calls := 0
	o := Options{ESP: f, Running: b, State: st, Deadline: 5 * time.Second, Poll: time.Millisecond,
		Checks: []Check{{"services", func(context.Context) error {
			calls++
			if calls < 3 {
				return errors.New("dhcp starting")
			}
			return nil
		}}}}
	boot, err := Prepare(o)
	if err != nil || !boot.Trial {
		t.Fatalf("Prepare = %+v, %v; want a trial", boot, err)
	}
	res, err := Commit(context.Background(), o, boot.Entry)
	if err != nil || !res.Committed {
		t.Fatalf("Commit = %+v, %v; want committed", res, err)
	}
	if diff := cmp.Diff([]string{"kiln-1.conf", "kiln-2.conf"}, entryNames(t, f)); diff != "" {
		t.Errorf("entries after commit (-want +got):\n%s", diff)
	}
	r, _ := st.Load()
	if r.Slot(b).Phase != slots.PhaseGood || !strings.HasPrefix(r.Slot(b).LastBoot, "good") {
		t.Errorf("record after commit: %+v", r.Slot(b))
	}
	// The next boot is not a trial.
	if boot, _ := Prepare(o); boot.Trial {
		t.Error("the boot after a commit is a trial again")
	}
}

func TestCommitFails(t *testing.T) {
	trial := ent(3, a, &bootentry.Counter{Left: 2, Done: 1})
	f := esp(trial, ent(2, b, nil))
	st := &slots.Store{Path: filepath.Join(t.TempDir(), "state.json")}
	o := Options{ESP: f, Running: a, State: st, Deadline: 30 * time.Millisecond, Poll: 5 * time.Millisecond,
		Checks: []Check{
			{"data", func(context.Context) error { return nil }},
			{"services", func(context.Context) error { return errors.New("mgmt: crash loop") }},
		}}
	boot, err := Prepare(o)
	if err != nil || !boot.Trial {
		t.Fatalf("Prepare = %+v, %v", boot, err)
	}
	res, err := Commit(context.Background(), o, boot.Entry)
	if err != nil || res.Committed || !strings.Contains(res.Reason, "services: mgmt: crash loop") {
		t.Fatalf("Commit = %+v, %v; want not committed naming the failed check", res, err)
	}
	if diff := cmp.Diff([]string{"kiln-2.conf", "kiln-3+0-1.conf"}, entryNames(t, f)); diff != "" {
		t.Errorf("entries after a failed commit (-want +got):\n%s", diff)
	}
	if next, _ := crashfs.Boot(f); next.Slot != b {
		t.Errorf("after a failed commit systemd-boot boots %s, want slot b", next.FileName())
	}
	r, _ := st.Load()
	if fl, ok := r.FailedGeneration(3); !ok || !strings.Contains(fl.Reason, "crash loop") {
		t.Errorf("failure not recorded: %+v", r)
	}
	// The fallback boot of slot b reports nothing new (already recorded).
	o.Running = b
	if boot, err := Prepare(o); err != nil || boot.Trial || boot.FellBack != nil {
		t.Errorf("Prepare after the failed trial = %+v, %v", boot, err)
	}
}

// TestCommitFinalFailureEndsAtOnce: a check that can never pass (a corrupted
// root) ends the trial at the first round, not at the deadline.
func TestCommitFinalFailureEndsAtOnce(t *testing.T) {
	trial := ent(3, a, &bootentry.Counter{Left: 2, Done: 1})
	f := esp(trial, ent(2, b, nil))
	rounds := 0
	o := Options{ESP: f, Running: a, Deadline: time.Hour, Poll: time.Millisecond,
		Checks: []Check{
			{"services", func(context.Context) error { rounds++; return errors.New("not yet") }},
			{"root", func(context.Context) error { return fmt.Errorf("%w: block 77 is corrupted", ErrFinal) }},
		}}
	res, err := Commit(context.Background(), o, trial)
	if err != nil || res.Committed || !strings.Contains(res.Reason, "cannot pass: services: not yet; root: will not pass: block 77") {
		t.Fatalf("Commit = %+v, %v; want not committed naming the final check", res, err)
	}
	if rounds != 1 {
		t.Errorf("Commit ran %d rounds of checks, want 1", rounds)
	}
	if next, _ := crashfs.Boot(f); next.Slot != b {
		t.Errorf("after a final failure systemd-boot boots %s, want slot b", next.FileName())
	}
}

func TestCommitStopsOnShutdown(t *testing.T) {
	trial := ent(2, b, &bootentry.Counter{Left: 2, Done: 1})
	f := esp(ent(1, a, nil), trial)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o := Options{ESP: f, Running: b, Deadline: time.Hour, Poll: time.Millisecond,
		Checks: []Check{{"services", func(context.Context) error { return errors.New("not yet") }}}}
	if _, err := Commit(ctx, o, trial); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit during shutdown = %v, want context.Canceled", err)
	}
	if diff := cmp.Diff([]string{"kiln-1.conf", "kiln-2+2-1.conf"}, entryNames(t, f)); diff != "" {
		t.Errorf("a shutdown during the checks changed the entries (-want +got):\n%s", diff)
	}
}

func TestPrepareRecordsFallback(t *testing.T) {
	f := esp(ent(1, a, nil), ent(2, b, &bootentry.Counter{Left: 0, Done: 3}))
	st := &slots.Store{Path: filepath.Join(t.TempDir(), "state.json")}
	st.Update(func(r *slots.Record) error { *r = slots.Installed(*r, b, "v2", 2, 3, t0); return nil })
	boot, err := Prepare(Options{ESP: f, Running: a, State: st})
	if err != nil || boot.Trial || boot.FellBack == nil || boot.FellBack.Generation != 2 {
		t.Fatalf("Prepare = %+v, %v; want a fallback from generation 2", boot, err)
	}
	r, _ := st.Load()
	if _, ok := r.FailedGeneration(2); !ok {
		t.Error("fallback not recorded as a failure")
	}
}

func TestPrepareData(t *testing.T) {
	dir := t.TempDir()
	d := Data{StateDir: dir, Files: []string{"kiln.db", "kiln.db-wal"}, Drop: []string{"kiln.db-shm"}}
	write := func(name, s string) { os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600) }
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "<missing>"
		}
		return string(b)
	}
	write("kiln.db", "schema 1")
	write("kiln.db-wal", "wal 1")

	var r slots.Record
	steps := []struct {
		name    string
		running int
		before  func()
		wantDid string
		wantErr string
		wantDB  string
		wantGen int
	}{
		{name: "first boot", running: 1, wantDB: "schema 1", wantGen: 1},
		{name: "same generation again", running: 1, wantDB: "schema 1", wantGen: 1},
		{name: "newer generation snapshots first", running: 2, wantDid: "snapshotted the database of generation 1", wantDB: "schema 1", wantGen: 2},
		{name: "it migrates", running: 2, before: func() { write("kiln.db", "schema 2"); write("kiln.db-shm", "shm") }, wantDB: "schema 2", wantGen: 2},
		{name: "fallback restores", running: 1, wantDid: "restored the database snapshot of generation 1", wantDB: "schema 1", wantGen: 1},
		{name: "retry of the newer one snapshots again", running: 3, before: func() { write("kiln.db", "schema 1 + data") }, wantDid: "snapshotted", wantDB: "schema 1 + data", wantGen: 3},
		{name: "older than the snapshot", running: 0 + 2, before: func() { write("kiln.db", "schema 3") },
			wantErr: "no snapshot of generation 2's database", wantDB: "schema 3", wantGen: 3},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.before != nil {
				s.before()
			}
			got, did, err := PrepareData(r, s.running, d, t0)
			if s.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), s.wantErr) {
					t.Fatalf("PrepareData = %v, want error containing %q", err, s.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(did, s.wantDid) || (s.wantDid == "" && did != "") {
				t.Errorf("PrepareData did %q, want %q", did, s.wantDid)
			}
			if got.DataGeneration != s.wantGen {
				t.Errorf("DataGeneration = %d, want %d", got.DataGeneration, s.wantGen)
			}
			if db := read("kiln.db"); db != s.wantDB {
				t.Errorf("kiln.db = %q, want %q", db, s.wantDB)
			}
			r = got
		})
	}
	if read("kiln.db-shm") != "<missing>" {
		t.Error("restore kept the newer generation's -shm index")
	}
}

// TestRollbackDuringTrialWins: an operator rolls back while the health
// checks run; the commit must not bless the entry afterwards.
func TestRollbackDuringTrialWins(t *testing.T) {
	trial := ent(2, b, &bootentry.Counter{Left: 2, Done: 1})
	f := esp(ent(1, a, nil), trial)
	lock := filepath.Join(t.TempDir(), "ota.lock")
	rolled := false
	o := Options{ESP: f, Running: b, LockPath: lock, Deadline: 5 * time.Second, Poll: time.Millisecond,
		Checks: []Check{{"services", func(context.Context) error {
			if !rolled {
				rolled = true
				c := &slots.Controller{ESP: f, Running: b, LockPath: lock}
				if err := c.RollBack(context.Background(), a); err != nil {
					t.Fatal(err)
				}
				return errors.New("starting")
			}
			return nil
		}}}}
	res, err := Commit(context.Background(), o, trial)
	if err == nil || res.Committed {
		t.Fatalf("Commit after a rollback = %+v, %v; want nothing decided", res, err)
	}
	if next, _ := crashfs.Boot(f); next.Slot != a {
		t.Errorf("after the rollback during the trial systemd-boot boots %s, want slot a", next.FileName())
	}
}
