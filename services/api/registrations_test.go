package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"kiln.dev/kiln/services/store"
)

func TestRegistrations(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t)
	a := ts.admin()
	macs := []string{"52:54:00:00:aa:01", "52:54:00:00:aa:02", "52:54:00:00:aa:03"}
	for i, mac := range macs {
		if _, _, err := ts.db.EnrollUnknown(ctx, mac); err != nil {
			t.Fatal(err)
		}
		name := []string{"lab-1", "lab-2", "lab-3"}[i]
		if _, err := ts.db.RequestRegistration(ctx, store.Registration{MAC: mac, Name: name, Role: "lab", BootProfile: store.BootDiskless}); err != nil {
			t.Fatal(err)
		}
	}
	r := ts.do(req{method: "GET", path: "/api/v1/registrations", as: a})
	var list []registrationJSON
	if err := json.Unmarshal(r.body, &list); r.code != http.StatusOK || err != nil || len(list) != 3 || list[0].Name != "lab-1" || list[0].State != "pending" {
		t.Fatalf("GET registrations = %d %s, want the three pending", r.code, r.body)
	}

	// lab-3's name is taken before approval: the others still go through.
	if _, err := ts.db.CreateHost(ctx, store.Host{Name: "lab-3"}); err != nil {
		t.Fatal(err)
	}
	r = ts.do(req{method: "POST", path: "/api/v1/registrations/approve", as: a,
		body: registrationDecision{Registrations: []string{"lab-1", "52-54-00-00-AA-02", "lab-3", "nope"}}})
	var res []registrationResult
	json.Unmarshal(r.body, &res)
	if r.code != http.StatusOK || len(res) != 4 {
		t.Fatalf("POST approve = %d %s, want 200 with four results", r.code, r.body)
	}
	var errs []string
	for _, x := range res {
		errs = append(errs, x.Error)
	}
	if errs[0] != "" || errs[1] != "" || !strings.Contains(errs[2], "lab-3 already exists") || !strings.Contains(errs[3], `no registration with MAC or name "nope"`) {
		t.Errorf("approve results = %q, want lab-1 and lab-2 done, lab-3 taken, nope unknown", errs)
	}
	for _, name := range []string{"lab-1", "lab-2"} {
		if h, err := ts.db.HostByName(ctx, name); err != nil || h.Role != "lab" || h.BootProfile != store.BootDiskless {
			t.Errorf("host %s after approval = %+v, %v, want role lab, diskless", name, h, err)
		}
	}
	evs, _ := ts.db.BootEvents(ctx, macs[0], 10)
	if len(evs) == 0 || evs[0].Kind != "register" || !strings.Contains(evs[0].Detail, "approved by admin") {
		t.Errorf("boot events of %s = %+v, want the approval by admin", macs[0], evs)
	}

	r = ts.do(req{method: "POST", path: "/api/v1/registrations/reject", as: a, body: registrationDecision{Registrations: []string{"lab-3"}, Reason: "lab-3 is the teacher's"}})
	if r.code != http.StatusOK {
		t.Fatalf("POST reject = %d %s", r.code, r.body)
	}
	got, err := ts.db.RegistrationOf(ctx, macs[2])
	if err != nil || got.State != store.RegistrationRejected || got.Reason != "lab-3 is the teacher's" {
		t.Errorf("registration after reject = %+v, %v", got, err)
	}
	for _, tc := range []struct {
		name string
		body registrationDecision
		path string
		want ErrorDetail
	}{
		{"none named", registrationDecision{}, "approve", ErrorDetail{Code: CodeInvalid, Field: "registrations"}},
		{"reason on approval", registrationDecision{Registrations: []string{"lab-3"}, Reason: "x"}, "approve", ErrorDetail{Code: CodeInvalid, Field: "reason"}},
		{"two-line reason", registrationDecision{Registrations: []string{"lab-3"}, Reason: "a\nb"}, "reject", ErrorDetail{Code: CodeInvalid, Field: "reason"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ts.do(req{method: "POST", path: "/api/v1/registrations/" + tc.path, as: a, body: tc.body})
			e := r.errBody(t)
			if diff := cmp.Diff(tc.want, ErrorDetail{Code: e.Code, Field: e.Field}); diff != "" || r.code != http.StatusUnprocessableEntity {
				t.Errorf("POST %s = %d %s (-want +got):\n%s", tc.path, r.code, r.body, diff)
			}
		})
	}
}
