package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCountVetRuns(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	if got, err := s.CountVetRuns(ctx); err != nil || len(got) != 0 {
		t.Fatalf("CountVetRuns(empty) = %v, %v, want none", got, err)
	}
	finish := func(host, state, verdict string) {
		t.Helper()
		h, err := s.CreateHost(ctx, Host{Name: host, MACs: []string{fmt.Sprintf("52:54:00:00:01:%02x", len(host))}})
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.CreateVetRun(ctx, VetRun{HostID: h.ID, Host: host, State: "booting", Profile: "quick"})
		if err != nil {
			t.Fatal(err)
		}
		if state == "booting" {
			return
		}
		if _, err := s.UpdateVetRun(ctx, r.ID, func(r *VetRun, _ *VetUpdate) error {
			r.State, r.Verdict, r.Active = state, verdict, false
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	finish("a", "done", "PASS")
	finish("bb", "done", "PASS")
	finish("ccc", "done", "FAIL")
	finish("dddd", "booting", "")
	got, err := s.CountVetRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []VetRunCount{{"booting", "", 1}, {"done", "FAIL", 1}, {"done", "PASS", 2}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CountVetRuns (-want +got):\n%s", diff)
	}
}
