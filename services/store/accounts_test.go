package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func mustUser(t *testing.T, s *Store, name string, role Role) User {
	t.Helper()
	u, err := s.CreateUser(context.Background(), User{Name: name, Role: role, PasswordHash: "hash-" + name})
	if err != nil {
		t.Fatalf("CreateUser(%s) = %v", name, err)
	}
	return u
}

func fieldOf(err error) string {
	var es Errors
	if errors.As(err, &es) && len(es) > 0 {
		return es[0].Field
	}
	return ""
}

func TestUsers(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	if n, err := s.CountUsers(ctx); err != nil || n != 0 {
		t.Fatalf("CountUsers(empty) = %d, %v, want 0", n, err)
	}
	admin := mustUser(t, s, "Admin", RoleAdmin)
	if admin.Name != "admin" || admin.ID == 0 {
		t.Errorf("CreateUser(Admin) = %+v, want name admin with an ID", admin)
	}
	for _, tc := range []struct {
		name      string
		u         User
		wantField string
		wantErr   error
	}{
		{"duplicate", User{Name: "ADMIN", Role: RoleRead, PasswordHash: "x"}, "name", ErrConflict},
		{"bad name", User{Name: "a b", Role: RoleRead, PasswordHash: "x"}, "name", ErrInvalid},
		{"bad role", User{Name: "bob", Role: "root", PasswordHash: "x"}, "role", ErrInvalid},
		{"no password", User{Name: "bob", Role: RoleRead}, "password", ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.CreateUser(ctx, tc.u)
			if !errors.Is(err, tc.wantErr) || fieldOf(err) != tc.wantField {
				t.Errorf("CreateUser(%+v) = %v, want %v on field %s", tc.u, err, tc.wantErr, tc.wantField)
			}
		})
	}

	// The last enabled admin can be neither demoted, disabled nor deleted.
	if _, err := s.UpdateUser(ctx, User{Name: "admin", Role: RoleRead}); !errors.Is(err, ErrConflict) || fieldOf(err) != "role" {
		t.Errorf("UpdateUser(demote last admin) = %v, want a conflict on role", err)
	}
	if _, err := s.UpdateUser(ctx, User{Name: "admin", Role: RoleAdmin, Disabled: true}); !errors.Is(err, ErrConflict) || fieldOf(err) != "disabled" {
		t.Errorf("UpdateUser(disable last admin) = %v, want a conflict on disabled", err)
	}
	if err := s.DeleteUser(ctx, "admin"); !errors.Is(err, ErrConflict) {
		t.Errorf("DeleteUser(last admin) = %v, want a conflict", err)
	}
	mustUser(t, s, "root2", RoleAdmin)
	if _, err := s.UpdateUser(ctx, User{Name: "admin", Role: RoleWrite}); err != nil {
		t.Errorf("UpdateUser(demote with another admin) = %v", err)
	}
	if err := s.DeleteUser(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteUser(nobody) = %v, want ErrNotFound", err)
	}
	us, err := s.ListUsers(ctx)
	if err != nil || len(us) != 2 || us[0].Name != "admin" || us[0].Role != RoleWrite || us[1].Name != "root2" {
		t.Errorf("ListUsers() = %+v, %v, want admin (write), root2", us, err)
	}

	// ResetAdmin restores admin rights and ends sessions.
	if err := s.CreateSession(ctx, Session{IDHash: "s1", UserID: admin.ID, CSRF: "c", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResetAdmin(ctx, "admin", "new-hash"); err != nil {
		t.Fatalf("ResetAdmin = %v", err)
	}
	u, err := s.UserByName(ctx, "admin")
	if err != nil || u.Role != RoleAdmin || u.PasswordHash != "new-hash" || u.Disabled {
		t.Errorf("after ResetAdmin UserByName = %+v, %v, want enabled admin with the new hash", u, err)
	}
	if _, _, err := s.SessionByHash(ctx, "s1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("session after ResetAdmin: %v, want ErrNotFound", err)
	}
	if _, err := s.ResetAdmin(ctx, "rescue", "h"); err != nil {
		t.Errorf("ResetAdmin(new account) = %v", err)
	}
}

func TestSessions(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s, err := Open(ctx, Path(t.TempDir()), WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u := mustUser(t, s, "op", RoleWrite)
	mustUser(t, s, "admin", RoleAdmin)
	for _, se := range []Session{
		{IDHash: "live", UserID: u.ID, CSRF: "c1", Expires: now.Add(time.Hour)},
		{IDHash: "old", UserID: u.ID, CSRF: "c2", Expires: now.Add(-time.Minute)},
		{IDHash: "other", UserID: u.ID, CSRF: "c3", Expires: now.Add(time.Hour)},
	} {
		if err := s.CreateSession(ctx, se); err != nil {
			t.Fatal(err)
		}
	}
	se, su, err := s.SessionByHash(ctx, "live")
	if err != nil || se.CSRF != "c1" || su.Name != "op" || su.Role != RoleWrite {
		t.Errorf("SessionByHash(live) = %+v, %+v, %v", se, su, err)
	}
	if _, _, err := s.SessionByHash(ctx, "old"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SessionByHash(expired) = %v, want ErrNotFound", err)
	}
	if n, err := s.PruneSessions(ctx, now); err != nil || n != 1 {
		t.Errorf("PruneSessions = %d, %v, want 1", n, err)
	}
	// A password change ends every other session.
	if err := s.SetPassword(ctx, "op", "h2", "live"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SessionByHash(ctx, "other"); !errors.Is(err, ErrNotFound) {
		t.Errorf("other session after SetPassword: %v, want ErrNotFound", err)
	}
	if _, _, err := s.SessionByHash(ctx, "live"); err != nil {
		t.Errorf("kept session after SetPassword: %v", err)
	}
	// Disabling ends them all.
	if _, err := s.UpdateUser(ctx, User{Name: "op", Role: RoleWrite, Disabled: true}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SessionByHash(ctx, "live"); !errors.Is(err, ErrNotFound) {
		t.Errorf("session of a disabled user: %v, want ErrNotFound", err)
	}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	u := mustUser(t, s, "ci", RoleWrite)
	a := mustUser(t, s, "admin", RoleAdmin)
	if _, err := s.CreateToken(ctx, APIToken{UserID: u.ID, Scope: "everything", SecretHash: "x"}); fieldOf(err) != "name" {
		t.Errorf("CreateToken(no name, bad scope) = %v, want field name first", err)
	}
	tok, err := s.CreateToken(ctx, APIToken{UserID: u.ID, Name: "pipeline", Scope: RoleRead, SecretHash: "h1", Prefix: "kiln_ab"})
	if err != nil || tok.ID == 0 || tok.User != "ci" {
		t.Fatalf("CreateToken = %+v, %v", tok, err)
	}
	if _, err := s.CreateToken(ctx, APIToken{UserID: a.ID, Name: "cli", Scope: RoleAdmin, SecretHash: "h2"}); err != nil {
		t.Fatal(err)
	}
	got, owner, err := s.TokenByHash(ctx, "h1")
	if err != nil || got.ID != tok.ID || owner.Name != "ci" || !got.Active(time.Now()) {
		t.Errorf("TokenByHash(h1) = %+v, %+v, %v", got, owner, err)
	}
	if ts, err := s.ListTokens(ctx, u.ID); err != nil || len(ts) != 1 {
		t.Errorf("ListTokens(ci) = %+v, %v, want 1", ts, err)
	}
	if ts, err := s.ListTokens(ctx, 0); err != nil || len(ts) != 2 || ts[0].Name != "cli" {
		t.Errorf("ListTokens(all) = %+v, %v, want 2 newest first", ts, err)
	}
	if err := s.RevokeToken(ctx, tok.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.TokenByHash(ctx, "h1"); got.Active(time.Now()) {
		t.Errorf("revoked token is still active")
	}
	if err := s.RevokeToken(ctx, 999, time.Now()); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeToken(999) = %v, want ErrNotFound", err)
	}
	// Deleting the owner deletes the tokens.
	if err := s.DeleteUser(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.TokenByHash(ctx, "h1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("token of a deleted user: %v, want ErrNotFound", err)
	}
}

func TestSettings(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	if err := s.PutSettings(ctx, map[string]string{"site_name": "lab", "session_hours": "8"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSettings(ctx, map[string]string{"session_hours": "", "site_name": "hall"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Settings(ctx)
	if err != nil || len(got) != 1 || got["site_name"] != "hall" {
		t.Errorf("Settings() = %v, %v, want only site_name=hall", got, err)
	}
}

func TestCheckHostAndMarks(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	mustCreate(t, s, Host{Name: "pc-01", MACs: []string{"52:54:00:00:00:01"}})
	m0, err := s.Marks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckHost(ctx, Host{Name: "pc-02", MACs: []string{"52:54:00:00:00:01"}}); !errors.Is(err, ErrConflict) || fieldOf(err) != "macs[0]" {
		t.Errorf("CheckHost(duplicate MAC) = %v, want a conflict on macs[0]", err)
	}
	if err := s.CheckHost(ctx, Host{Name: "pc-02", MACs: []string{"52:54:00:00:00:02"}}); err != nil {
		t.Errorf("CheckHost(good) = %v", err)
	}
	if _, err := s.HostByName(ctx, "pc-02"); !errors.Is(err, ErrNotFound) {
		t.Errorf("CheckHost stored the host: %v", err)
	}
	if m, _ := s.Marks(ctx); m != m0 {
		t.Errorf("Marks after CheckHost = %+v, want unchanged %+v", m, m0)
	}
	for i := range 3 {
		if err := s.AddBootEvent(ctx, BootEvent{MAC: "52:54:00:00:00:01", Kind: EventDHCPAck, Detail: string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	m1, _ := s.Marks(ctx)
	if m1.BootEvent != m0.BootEvent+3 || m1.Data != m0.Data {
		t.Errorf("Marks after 3 boot events = %+v, want boot event +3 from %+v", m1, m0)
	}
	es, err := s.BootEventsAfter(ctx, m0.BootEvent+1, 0)
	if err != nil || len(es) != 2 || es[0].Detail != "b" {
		t.Errorf("BootEventsAfter = %+v, %v, want b, c", es, err)
	}
	if es, err := s.RecentBootEvents(ctx, 1); err != nil || len(es) != 1 || es[0].Detail != "c" {
		t.Errorf("RecentBootEvents(1) = %+v, %v, want c", es, err)
	}
}
