package store

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

func enrolled(t *testing.T, s *Store, mac string) Host {
	t.Helper()
	h, _, err := s.EnrollUnknown(context.Background(), mac)
	if err != nil {
		t.Fatalf("EnrollUnknown(%s) = %v", mac, err)
	}
	return h
}

// fieldErr returns the FieldError of field in err, or nil.
func fieldErr(err error, field string) *FieldError {
	var es Errors
	if errors.As(err, &es) {
		for _, e := range es {
			if e.Field == field {
				return e
			}
		}
	}
	var fe *FieldError
	if errors.As(err, &fe) && fe.Field == field {
		return fe
	}
	return nil
}

func TestRegister(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	mustCreate(t, s, Host{Name: "pc-01", MACs: []string{"52:54:00:00:00:01"}})
	mustCreate(t, s, Host{Name: "server", MACs: []string{"52:54:00:00:00:02"}, Aliases: []string{"files"}})
	enrolled(t, s, "52:54:00:00:00:10")
	enrolled(t, s, "52:54:00:00:00:11")
	if _, err := s.RequestRegistration(ctx, Registration{MAC: "52:54:00:00:00:11", Name: "pc-09", BootProfile: BootDiskless}); err != nil {
		t.Fatalf("RequestRegistration(pc-09) = %v", err)
	}
	tests := []struct {
		name, mac, host string
		field           string // the FieldError expected, "" for none
		wantErr         error
	}{
		{name: "taken by a host", mac: "52:54:00:00:00:10", host: "pc-01", field: "name", wantErr: ErrConflict},
		{name: "taken by an alias", mac: "52:54:00:00:00:10", host: "files", field: "name", wantErr: ErrConflict},
		{name: "asked for by another machine", mac: "52:54:00:00:00:10", host: "pc-09", field: "name", wantErr: ErrConflict},
		{name: "not a DNS label", mac: "52:54:00:00:00:10", host: "pc_07", field: "name", wantErr: ErrInvalid},
		{name: "empty", mac: "52:54:00:00:00:10", host: " ", field: "name", wantErr: ErrInvalid},
		{name: "kiln's own names", mac: "52:54:00:00:00:10", host: "unknown-525400000011", field: "name", wantErr: ErrInvalid},
		{name: "a registered host's MAC", mac: "52:54:00:00:00:01", host: "pc-03", wantErr: ErrNotEnrolled},
		{name: "no host at all", mac: "52:54:00:00:00:99", host: "pc-03", wantErr: ErrNotFound},
		{name: "ok", mac: "52:54:00:00:00:10", host: "PC-02"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := s.Register(ctx, Registration{MAC: tc.mac, Name: tc.host, Role: "room-a", BootProfile: BootDiskless, RootImage: "contest", Home: "lab"})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Register(%s, %q) = %v, want %v", tc.mac, tc.host, err, tc.wantErr)
				}
				if tc.field != "" && fieldErr(err, tc.field) == nil {
					t.Errorf("Register(%s, %q) = %v, want a FieldError of %s", tc.mac, tc.host, err, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatalf("Register(%s, %q) = %v", tc.mac, tc.host, err)
			}
			got, err := s.HostByMAC(ctx, tc.mac)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != h.ID || got.Name != "pc-02" || got.Role != "room-a" || got.BootProfile != BootDiskless || got.RootImage != "contest" || got.Home != "lab" {
				t.Errorf("after Register: host = %+v, want pc-02, room-a, diskless, contest, lab (same id %d)", got, h.ID)
			}
		})
	}
	// A registered machine cannot register again.
	if _, err := s.Register(ctx, Registration{MAC: "52:54:00:00:00:10", Name: "pc-05"}); !errors.Is(err, ErrNotEnrolled) {
		t.Errorf("second Register = %v, want ErrNotEnrolled", err)
	}
}

func TestRegistrationApproval(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	a, b := "52:54:00:00:00:21", "52:54:00:00:00:22"
	enrolled(t, s, a)
	enrolled(t, s, b)
	client := netip.MustParseAddr("10.0.0.21")
	r, err := s.RequestRegistration(ctx, Registration{MAC: a, Name: "lab-1", Role: "lab", BootProfile: BootDiskless, RootImage: "contest", Client: client})
	if err != nil {
		t.Fatalf("RequestRegistration = %v", err)
	}
	if r.State != RegistrationPending || r.Created.IsZero() {
		t.Errorf("RequestRegistration = %+v, want pending with a time", r)
	}
	// The same machine may change its mind; the other may not take the name.
	if _, err := s.RequestRegistration(ctx, Registration{MAC: a, Name: "lab-2", Role: "lab", BootProfile: BootDiskless, Client: client}); err != nil {
		t.Fatalf("RequestRegistration again = %v", err)
	}
	if _, err := s.RequestRegistration(ctx, Registration{MAC: b, Name: "lab-2"}); fieldErr(err, "name") == nil || !errors.Is(err, ErrConflict) {
		t.Errorf("RequestRegistration of a pending name = %v, want a name conflict", err)
	}
	rs, err := s.Registrations(ctx)
	if err != nil || len(rs) != 1 || rs[0].Name != "lab-2" || rs[0].Client != client || rs[0].MAC != a {
		t.Fatalf("Registrations = %+v, %v, want a's one request for lab-2 from %s", rs, err, client)
	}

	if _, err := s.RejectRegistration(ctx, a, "ask the proctor"); err != nil {
		t.Fatalf("RejectRegistration = %v", err)
	}
	got, err := s.RegistrationOf(ctx, a)
	if err != nil || got.State != RegistrationRejected || got.Reason != "ask the proctor" {
		t.Errorf("RegistrationOf after reject = %+v, %v, want rejected with the reason", got, err)
	}
	if _, err := s.ApproveRegistration(ctx, a); !errors.Is(err, ErrConflict) {
		t.Errorf("ApproveRegistration of a rejected one = %v, want ErrConflict", err)
	}
	if _, err := s.RejectRegistration(ctx, a, "two\nlines"); fieldErr(err, "reason") == nil {
		t.Errorf("RejectRegistration with a newline = %v, want a reason FieldError", err)
	}

	// Asking again after a rejection makes it pending again; approval applies it.
	if _, err := s.RequestRegistration(ctx, Registration{MAC: a, Name: "lab-3", Role: "lab", BootProfile: BootDiskless, RootImage: "contest@2"}); err != nil {
		t.Fatalf("RequestRegistration after reject = %v", err)
	}
	h, err := s.ApproveRegistration(ctx, a)
	if err != nil {
		t.Fatalf("ApproveRegistration = %v", err)
	}
	if h.Name != "lab-3" || h.Role != "lab" || h.BootProfile != BootDiskless || h.RootImage != "contest@2" {
		t.Errorf("ApproveRegistration = %+v, want lab-3 of role lab booting contest@2 diskless", h)
	}
	if _, err := s.RegistrationOf(ctx, a); !errors.Is(err, ErrNotFound) {
		t.Errorf("RegistrationOf after approval = %v, want ErrNotFound", err)
	}
	if _, err := s.ApproveRegistration(ctx, b); !errors.Is(err, ErrNotFound) {
		t.Errorf("ApproveRegistration without a request = %v, want ErrNotFound", err)
	}

	// A name taken between request and approval: the approval says so, the request stays.
	if _, err := s.RequestRegistration(ctx, Registration{MAC: b, Name: "lab-4"}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, Host{Name: "lab-4"})
	if _, err := s.ApproveRegistration(ctx, b); fieldErr(err, "name") == nil {
		t.Errorf("ApproveRegistration of a taken name = %v, want a name FieldError", err)
	}
	if r, err := s.RegistrationOf(ctx, b); err != nil || r.State != RegistrationPending {
		t.Errorf("RegistrationOf after a failed approval = %+v, %v, want still pending", r, err)
	}
}
