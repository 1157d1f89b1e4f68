package store

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestJobRuns(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	if _, err := s.RecordJobRun(ctx, JobRun{}); err == nil {
		t.Error("RecordJobRun(no job name) = nil, want an error")
	}
	start := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	var last JobRun
	for i := range JobRunsKept + 5 {
		r, err := s.RecordJobRun(ctx, JobRun{Job: "retention-leases", StartedBy: "schedule", Started: start.Add(time.Duration(i) * time.Hour),
			Duration: 1500 * time.Millisecond, Removed: int64(i), Summary: fmt.Sprintf("removed %d leases", i)})
		if err != nil {
			t.Fatal(err)
		}
		last = r
	}
	other, err := s.RecordJobRun(ctx, JobRun{Job: "backup", StartedBy: "user:admin", Started: start, Error: "disk full"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.LastJobRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]JobRun{"retention-leases": last, "backup": other}, got); diff != "" {
		t.Errorf("LastJobRuns() (-want +got):\n%s", diff)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM job_runs WHERE job = 'retention-leases'`).Scan(&n); err != nil || n != JobRunsKept {
		t.Errorf("runs kept of one job = %d, %v, want %d", n, err, JobRunsKept)
	}
}

func TestPruneLeases(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	now := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	for i, exp := range []time.Duration{-60 * 24 * time.Hour, -31 * 24 * time.Hour, -time.Hour, time.Hour} {
		l := Lease{IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)}), Subnet: "lan", MAC: fmt.Sprintf("52:54:00:00:00:%02x", i),
			State: LeaseReleased, Expires: now.Add(exp)}
		if err := s.PutLease(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	v1, _ := s.DataVersion(ctx)
	n, err := s.PruneLeases(ctx, now.Add(-30*24*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("PruneLeases(30 days ago) = %d, %v, want 2", n, err)
	}
	left, _ := s.Leases(ctx, "")
	if len(left) != 2 || left[0].IP != netip.MustParseAddr("10.0.0.12") {
		t.Errorf("leases left = %+v, want 10.0.0.12 and 10.0.0.13", left)
	}
	if v2, _ := s.DataVersion(ctx); v2 == v1 {
		t.Error("DataVersion unchanged after leases were removed")
	}
	if n, err := s.PruneLeases(ctx, now.Add(-30*24*time.Hour)); err != nil || n != 0 {
		t.Errorf("PruneLeases again = %d, %v, want 0", n, err)
	}
}
