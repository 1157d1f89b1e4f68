package commit_test

import (
	"context"
	"testing"
	"time"

	"kiln.dev/kiln/ota/commit"
	"kiln.dev/kiln/ota/slots"
	"kiln.dev/kiln/services/store"
)

// TestRollbackKeepsTheRealDatabaseUsable runs the snapshot/restore cycle on
// a real kiln database: what the older generation stored survives, what the
// failed newer generation stored is discarded, and the database opens.
func TestRollbackKeepsTheRealDatabaseUsable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := commit.Data{StateDir: dir, Files: []string{store.FileName, store.FileName + "-wal"}, Drop: []string{store.FileName + "-shm"}}
	now := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	addHost := func(name, mac string) {
		t.Helper()
		s, err := store.Open(ctx, store.Path(dir))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.CreateHost(ctx, store.Host{Name: name, MACs: []string{mac}}); err != nil {
			t.Fatal(err)
		}
	}
	hosts := func() []string {
		t.Helper()
		s, err := store.Open(ctx, store.Path(dir))
		if err != nil {
			t.Fatalf("opening the database after the rollback: %v", err)
		}
		defer s.Close()
		hs, err := s.ListHosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range hs {
			out = append(out, h.Name)
		}
		return out
	}

	var r slots.Record
	var err error
	if r, _, err = commit.PrepareData(r, 1, d, now); err != nil { // generation 1 boots
		t.Fatal(err)
	}
	addHost("pc-01", "52:54:00:00:00:01")
	if r, _, err = commit.PrepareData(r, 2, d, now); err != nil { // generation 2's trial boot
		t.Fatal(err)
	}
	addHost("pc-02", "52:54:00:00:00:02")                         // written under generation 2
	if r, _, err = commit.PrepareData(r, 1, d, now); err != nil { // fallback to generation 1
		t.Fatal(err)
	}
	if got := hosts(); len(got) != 1 || got[0] != "pc-01" {
		t.Errorf("hosts after the rollback = %v, want [pc-01]", got)
	}
}
