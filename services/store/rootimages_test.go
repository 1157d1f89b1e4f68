package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRootImageLifecycle(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	now := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	version := func() int64 {
		v, err := s.DataVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if n, err := s.NextRootVersion(ctx, "contest"); err != nil || n != 1 {
		t.Fatalf("NextRootVersion(new name) = %d, %v; want 1", n, err)
	}
	v0 := version()
	if _, err := s.AddRootImage(ctx, RootImage{Name: "contest", Version: 1, Size: 10, Files: 3, Source: "a.tar", Promoted: true}); err != nil {
		t.Fatal(err)
	}
	if version() == v0 {
		t.Error("AddRootImage did not change DataVersion (the nfs service would not see it)")
	}
	if _, err := s.AddRootImage(ctx, RootImage{Name: "contest", Version: 1, Size: 1}); !errors.Is(err, ErrConflict) {
		t.Errorf("AddRootImage(existing version) = %v, want ErrConflict", err)
	}
	if _, err := s.AddRootImage(ctx, RootImage{Name: "../etc", Version: 1}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "name:") {
		t.Errorf("AddRootImage(bad name) = %v, want ErrInvalid naming the field", err)
	}
	if _, err := s.AddRootImage(ctx, RootImage{Name: "contest", Version: 2, Size: 20}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.NextRootVersion(ctx, "contest"); n != 3 {
		t.Errorf("NextRootVersion = %d, want 3", n)
	}
	if ri, err := s.RootImageByRef(ctx, "contest"); err != nil || ri.Version != 1 {
		t.Errorf("RootImageByRef(contest) = %+v, %v; want the promoted version 1", ri, err)
	}

	// Staging → promote: version 2 becomes what hosts naming contest boot.
	now = now.Add(time.Minute)
	ri, err := s.PromoteRootImage(ctx, "contest", 2)
	if err != nil || !ri.Promoted || !ri.PromotedAt.Equal(now) {
		t.Fatalf("PromoteRootImage(contest@2) = %+v, %v", ri, err)
	}
	all, _ := s.RootImages(ctx)
	if len(all) != 2 || all[0].Promoted || !all[1].Promoted {
		t.Errorf("after promote, RootImages() = %+v; want only version 2 promoted", all)
	}
	if _, err := s.PromoteRootImage(ctx, "contest", 9); !errors.Is(err, ErrNotFound) {
		t.Errorf("PromoteRootImage(missing) = %v, want ErrNotFound", err)
	}

	// Removal refuses what is in force.
	if err := s.DeleteRootImage(ctx, "contest", 2, time.Hour, false); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "promoted") {
		t.Errorf("DeleteRootImage(promoted) = %v, want ErrConflict saying promoted", err)
	}
	mustCreate(t, s, Host{Name: "pc-01", RootImage: "contest@1"})
	if err := s.DeleteRootImage(ctx, "contest", 1, time.Hour, true); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "pc-01") {
		t.Errorf("DeleteRootImage(pinned) = %v, want ErrConflict naming pc-01", err)
	}
	h, _ := s.HostByName(ctx, "pc-01")
	h.RootImage = "contest"
	if _, err := s.UpdateHost(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkNFSUse(ctx, "pc-01", "/roots/contest/1", now.Add(-30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRootImage(ctx, "contest", 1, time.Hour, false); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("DeleteRootImage(used 30 min ago) = %v, want ErrConflict suggesting --force", err)
	}
	if err := s.DeleteRootImage(ctx, "contest", 1, 10*time.Minute, false); err != nil {
		t.Errorf("DeleteRootImage(last used before the in-use window) = %v", err)
	}
	if uses, _ := s.NFSUses(ctx); len(uses) != 0 {
		t.Errorf("uses of a removed version kept: %+v", uses)
	}
	if err := s.DeleteRootImage(ctx, "contest", 1, time.Hour, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteRootImage(twice) = %v, want ErrNotFound", err)
	}
	if all, _ := s.RootImages(ctx); len(all) != 1 || all[0].Version != 2 {
		t.Errorf("after rm, RootImages() = %+v, want version 2 only", all)
	}
}
