package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestInitiators(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "kiln.db"))
	mustCreate(t, s, Host{Name: "node1", MACs: []string{"52:54:00:00:01:01"}})
	mustCreate(t, s, Host{Name: "node2", MACs: []string{"52:54:00:00:01:02"}})
	in := Initiator{Host: "node1", IQN: "iqn.2026-01.example.hall:initiator:node1", CHAPUser: "node1", CHAPSealed: "v1:sealed"}
	if _, err := s.PutInitiator(ctx, in); err != nil {
		t.Fatal(err)
	}
	v0, _ := s.DataVersion(ctx)
	in.MutualUser, in.MutualSealed = "kiln", "v1:mutual"
	if _, err := s.PutInitiator(ctx, in); err != nil {
		t.Fatal(err)
	}
	if v1, _ := s.DataVersion(ctx); v1 == v0 {
		t.Errorf("PutInitiator did not move DataVersion")
	}
	got, err := s.InitiatorOf(ctx, "NODE1")
	if err != nil || got.MutualSealed != "v1:mutual" || got.IQN != in.IQN {
		t.Errorf("InitiatorOf(node1) = %+v, %v; want the replaced record", got, err)
	}
	for _, c := range []struct {
		name string
		in   Initiator
		want error
		msg  string
	}{
		{"same IQN as node1", Initiator{Host: "node2", IQN: in.IQN, CHAPUser: "u", CHAPSealed: "s"}, ErrConflict, "already host node1's initiator"},
		{"no secret", Initiator{Host: "node2", IQN: "iqn.2026-01.x:y", CHAPUser: "u"}, ErrInvalid, "chap"},
		{"half mutual", Initiator{Host: "node2", IQN: "iqn.2026-01.x:y", CHAPUser: "u", CHAPSealed: "s", MutualUser: "m"}, ErrInvalid, "mutual_chap"},
		{"unknown host", Initiator{Host: "node9", IQN: "iqn.2026-01.x:y", CHAPUser: "u", CHAPSealed: "s"}, ErrNotFound, "node9"},
	} {
		if _, err := s.PutInitiator(ctx, c.in); !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: PutInitiator = %v, want %v mentioning %q", c.name, err, c.want, c.msg)
		}
	}
	if err := s.DeleteHost(ctx, "node1"); err != nil {
		t.Fatal(err)
	}
	if all, err := s.Initiators(ctx); err != nil || len(all) != 0 {
		t.Errorf("after deleting node1, Initiators = %v, %v; want none", all, err)
	}
}

func TestVolumes(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "kiln.db"))
	mustCreate(t, s, Host{Name: "node1", MACs: []string{"52:54:00:00:01:01"}})
	for _, v := range []Volume{{Name: "debian", Size: 4 << 30}, {Host: "node1", Name: "boot", Size: 8 << 30, Source: "volume:debian"}, {Host: "node1", Name: "data", Size: 1 << 20}} {
		if _, err := s.CreateVolume(ctx, v); err != nil {
			t.Fatalf("CreateVolume(%+v): %v", v, err)
		}
	}
	for _, c := range []struct {
		v    Volume
		want error
		msg  string
	}{
		{Volume{Name: "debian", Size: 1 << 20}, ErrConflict, "volume debian already exists"},
		{Volume{Host: "node1", Name: "boot", Size: 1 << 20}, ErrConflict, "node1/boot already exists"},
		{Volume{Host: "node1", Name: "bad_name", Size: 1 << 20}, ErrInvalid, "name"},
		{Volume{Host: "node1", Name: "odd", Size: 1<<20 + 512}, ErrInvalid, "whole number of MiB"},
		{Volume{Host: "node1", Name: "zero"}, ErrInvalid, "at least 1 MiB"},
		{Volume{Host: "node9", Name: "boot", Size: 1 << 20}, ErrNotFound, "node9"},
	} {
		if _, err := s.CreateVolume(ctx, c.v); !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("CreateVolume(%+v) = %v, want %v mentioning %q", c.v, err, c.want, c.msg)
		}
	}
	if _, err := s.ResizeVolume(ctx, "node1", "boot", 4<<30); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "only grow") {
		t.Errorf("shrinking = %v, want a refusal", err)
	}
	if v, err := s.ResizeVolume(ctx, "node1", "boot", 16<<30); err != nil || v.Size != 16<<30 {
		t.Errorf("growing = %+v, %v", v, err)
	}
	vs, err := s.Volumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range vs {
		names = append(names, volumeLabel(v.Host, v.Name))
	}
	if got, want := strings.Join(names, " "), "debian node1/boot node1/data"; got != want {
		t.Errorf("Volumes = %s, want %s", got, want)
	}
	if err := s.DeleteHost(ctx, "node1"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "kiln volumes rm") {
		t.Errorf("deleting a host with volumes = %v, want a conflict naming the fix", err)
	}
	for _, n := range []string{"boot", "data"} {
		if err := s.DeleteVolume(ctx, "node1", n); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteVolume(ctx, "node1", "boot"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting twice = %v, want ErrNotFound", err)
	}
	if err := s.DeleteHost(ctx, "node1"); err != nil {
		t.Errorf("deleting the host without volumes: %v", err)
	}
}

func TestSettingOnce(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	for _, v := range []string{"2026-01", "2026-02"} {
		if got, err := s.SettingOnce(ctx, "iscsi.naming_date", v); err != nil || got != "2026-01" {
			t.Errorf("SettingOnce(%s) = %q, %v; want the first value 2026-01", v, got, err)
		}
	}
}
