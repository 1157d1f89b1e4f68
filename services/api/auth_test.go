package api

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"kiln.dev/kiln/services/api/wire"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/vetting/orchestrator"
)

// fillPath gives a route's path parameters sample values.
func fillPath(p string) string {
	return strings.NewReplacer("{name}", "nobody", "{id}", "999", "{ip}", "10.9.9.9").Replace(p)
}

// publicRoutes are the only routes anyone may call without credentials.
// Adding one here is a security decision: say why in its Summary.
var publicRoutes = []string{
	"GET /api/v1/openapi.json",
	"GET /api/v1/info",
	"POST /api/v1/session",
	"GET /api/v1/status",
}

func TestPublicRoutesAreOnlyThese(t *testing.T) {
	ts := newTestServer(t)
	var got []string
	for _, rt := range ts.Routes() {
		if rt.Scope == ScopePublic {
			got = append(got, rt.Pattern())
		}
	}
	if !slices.Equal(got, publicRoutes) {
		t.Errorf("public routes = %q, want exactly %q", got, publicRoutes)
	}
}

// TestEveryRouteRefusesCallersWithoutTheScope walks the router's own table:
// every non-public route refuses an anonymous caller (401), every route above
// read refuses a read-scoped token (403), every admin route a write token, and
// every mutating route a browser session without the CSRF token.
func TestEveryRouteRefusesCallersWithoutTheScope(t *testing.T) {
	ts := newTestServer(t)
	readTok := ts.userWithToken("viewer", store.RoleAdmin, store.RoleRead)
	writeTok := ts.userWithToken("writer", store.RoleAdmin, store.RoleWrite)
	a := ts.admin()
	mutating := 0
	for _, rt := range ts.Routes() {
		if rt.Scope == ScopePublic {
			continue
		}
		path := fillPath(rt.Path)
		t.Run(rt.Pattern(), func(t *testing.T) {
			r := ts.do(req{method: rt.Method, path: path, body: "{}"})
			if r.code != http.StatusUnauthorized || r.errBody(t).Code != CodeUnauthenticated {
				t.Errorf("anonymous %s %s = %d %s, want 401 unauthenticated", rt.Method, path, r.code, r.body)
			}
			if rt.Mutating() || rt.Scope.rank() > ScopeRead.rank() {
				r := ts.do(req{method: rt.Method, path: path, body: "{}", token: readTok})
				if r.code != http.StatusForbidden || r.errBody(t).Code != CodeForbidden {
					t.Errorf("read token %s %s = %d %s, want 403 forbidden", rt.Method, path, r.code, r.body)
				}
			}
			if rt.Scope == ScopeAdmin {
				r := ts.do(req{method: rt.Method, path: path, body: "{}", token: writeTok})
				if r.code != http.StatusForbidden {
					t.Errorf("write token %s %s = %d %s, want 403", rt.Method, path, r.code, r.body)
				}
			}
			if rt.Mutating() {
				r := ts.do(req{method: rt.Method, path: path, body: "{}", as: a, noCSRF: true})
				if r.code != http.StatusForbidden || r.errBody(t).Code != CodeCSRF {
					t.Errorf("session without CSRF %s %s = %d %s, want 403 csrf", rt.Method, path, r.code, r.body)
				}
				r = ts.do(req{method: rt.Method, path: path, body: "{}", as: a, header: map[string]string{"Origin": "https://evil.example"}})
				if r.code != http.StatusForbidden || r.errBody(t).Code != CodeCSRF {
					t.Errorf("cross-origin %s %s = %d %s, want 403 csrf", rt.Method, path, r.code, r.body)
				}
			}
		})
		if rt.Mutating() {
			mutating++
		}
	}
	if mutating < 10 {
		t.Errorf("only %d mutating routes enumerated; the router's table is not being read", mutating)
	}
}

func TestMountedRoutesAreProtected(t *testing.T) {
	ts := newTestServer(t)
	called := false
	ts.Mount("POST /api/v1/update/bundle", ScopeAdmin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called = Caller(r) != nil
		w.WriteHeader(http.StatusAccepted)
	}))
	if r := ts.do(req{method: "POST", path: "/api/v1/update/bundle", body: "x"}); r.code != http.StatusUnauthorized {
		t.Errorf("anonymous POST to a mounted route = %d, want 401", r.code)
	}
	if r := ts.do(req{method: "POST", path: "/api/v1/update/bundle", body: "x", as: ts.admin()}); r.code != http.StatusAccepted || !called {
		t.Errorf("admin POST to a mounted route = %d (handler saw caller: %v), want 202", r.code, called)
	}
	if !slices.ContainsFunc(ts.Routes(), func(r Route) bool { return r.Pattern() == "POST /api/v1/update/bundle" }) {
		t.Errorf("Routes() lacks the mounted route")
	}
	if !strings.Contains(string(ts.OpenAPI()), "/api/v1/update/bundle") {
		t.Errorf("OpenAPI lacks the mounted route")
	}
}

func TestFirstBootLogin(t *testing.T) {
	ts := newTestServer(t)
	path := InitialPasswordPath(ts.stateDir)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("initial password file: %v (mode %v), want 0600", err, fi.Mode().Perm())
	}
	pw := ts.initialPassword()
	if len(pw) != 19 || strings.Count(pw, "-") != 3 {
		t.Errorf("initial password %q, want four dash-separated groups of four", pw)
	}
	// Wrong password, unknown user: the same answer.
	for _, lr := range []loginRequest{{AdminUser, "wrong-password"}, {"nobody", pw}} {
		r := ts.do(req{method: "POST", path: "/api/v1/session", body: lr})
		if r.code != http.StatusUnauthorized || r.errBody(t).Code != CodeBadCredentials {
			t.Errorf("login %s = %d %s, want 401 bad_credentials", lr.User, r.code, r.body)
		}
	}
	r := ts.do(req{method: "POST", path: "/api/v1/session", body: loginRequest{AdminUser, pw}})
	cookie := r.header.Get("Set-Cookie")
	for _, want := range []string{SessionCookie + "=", "HttpOnly", "Secure", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("Set-Cookie %q lacks %s", cookie, want)
		}
	}
	var se sessionJSON
	json.Unmarshal(r.body, &se)
	if r.code != http.StatusCreated || se.Role != "admin" || !se.InitialPassword || se.CSRFToken == "" {
		t.Errorf("first login = %d %s, want 201 admin with initial_password and a CSRF token", r.code, r.body)
	}
	a := ts.admin()
	// Changing it: wrong current password, too short, then right.
	for _, tc := range []struct {
		in        passwordChange
		wantField string
	}{
		{passwordChange{CurrentPassword: "nope", Password: "a-new-long-password"}, "current_password"},
		{passwordChange{CurrentPassword: pw, Password: "short"}, "password"},
		{passwordChange{CurrentPassword: pw, Password: pw}, "password"},
	} {
		r := ts.do(req{method: "PUT", path: "/api/v1/users/admin/password", as: a, body: tc.in})
		if r.code != http.StatusUnprocessableEntity || r.errBody(t).Field != tc.wantField {
			t.Errorf("password change %+v = %d %s, want 422 on %s", tc.in, r.code, r.body, tc.wantField)
		}
	}
	other := ts.login(AdminUser, pw)
	if r := ts.do(req{method: "PUT", path: "/api/v1/users/admin/password", as: a, body: passwordChange{pw, "correct horse battery"}}); r.code != http.StatusNoContent {
		t.Fatalf("password change = %d %s", r.code, r.body)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("initial password file still there after the change: %v", err)
	}
	r = ts.do(req{method: "GET", path: "/api/v1/session", as: a})
	json.Unmarshal(r.body, &se)
	if r.code != http.StatusOK || se.InitialPassword {
		t.Errorf("session after change = %d %s, want 200 without initial_password", r.code, r.body)
	}
	if r := ts.do(req{method: "GET", path: "/api/v1/session", as: other}); r.code != http.StatusUnauthorized {
		t.Errorf("the other session after a password change = %d, want 401 (ended)", r.code)
	}
	// A restart neither recreates the file nor the account.
	if pw, created, err := EnsureInitialPassword(ts.stateDir); pw != "" || created || err != nil {
		t.Errorf("EnsureInitialPassword after the change = %q, %v, %v; want nothing", pw, created, err)
	}
	if _, err := New(context.Background(), ts.o); err != nil {
		t.Fatal(err)
	}
	ts.login(AdminUser, "correct horse battery")
	// Logout ends the session.
	if r := ts.do(req{method: "DELETE", path: "/api/v1/session", as: a}); r.code != http.StatusNoContent || !strings.Contains(r.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("logout = %d %v", r.code, r.header)
	}
	if r := ts.do(req{method: "GET", path: "/api/v1/hosts", as: a}); r.code != http.StatusUnauthorized {
		t.Errorf("after logout = %d, want 401", r.code)
	}
}

func TestEnsureInitialPasswordBeforeTheAPI(t *testing.T) {
	// PID 1 makes the password before the API first starts; the API uses it.
	dir := t.TempDir()
	pw, created, err := EnsureInitialPassword(dir)
	if err != nil || !created || pw == "" {
		t.Fatalf("EnsureInitialPassword(fresh) = %q, %v, %v", pw, created, err)
	}
	again, created, err := EnsureInitialPassword(dir)
	if again != pw || created || err != nil {
		t.Errorf("EnsureInitialPassword again = %q, %v, %v; want the same password", again, created, err)
	}
	ts := newTestServer(t, func(o *Options) {
		o.StateDir = dir
	})
	ts.stateDir = dir
	ts.login(AdminUser, pw)
}

func TestPasswordReset(t *testing.T) {
	ts := newTestServer(t)
	a := ts.admin()
	// The admin demoted and disabled (with another admin around), password changed.
	ts.userWithToken("boss", store.RoleAdmin, store.RoleAdmin)
	if r := ts.do(req{method: "PUT", path: "/api/v1/users/admin/password", as: a, body: passwordChange{ts.initialPassword(), "forgotten-password"}}); r.code != http.StatusNoContent {
		t.Fatalf("password change = %d %s", r.code, r.body)
	}
	boss := ts.login("boss", "password-of-boss")
	if r := ts.do(req{method: "PATCH", path: "/api/v1/users/admin", as: boss, body: map[string]any{"role": "read", "disabled": true}}); r.code != http.StatusOK {
		t.Fatalf("disabling admin = %d %s", r.code, r.body)
	}
	pw, err := RequestPasswordReset(ts.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadInitialPassword(ts.stateDir); got != pw {
		t.Errorf("ReadInitialPassword with a pending reset = %q, want %q", got, pw)
	}
	b := ts.login(AdminUser, pw)
	r := ts.do(req{method: "GET", path: "/api/v1/session", as: b})
	var se sessionJSON
	json.Unmarshal(r.body, &se)
	if se.Role != "admin" || !se.InitialPassword {
		t.Errorf("session after reset = %s, want admin using the reset password", r.body)
	}
	if r := ts.do(req{method: "POST", path: "/api/v1/session", body: loginRequest{AdminUser, "forgotten-password"}}); r.code != http.StatusUnauthorized {
		t.Errorf("old password after reset = %d, want 401", r.code)
	}
}

func TestLockoutAndBan(t *testing.T) {
	ts := newTestServer(t)
	for i := range maxFailures {
		r := ts.do(req{method: "POST", path: "/api/v1/session", body: loginRequest{AdminUser, "guess"}})
		if r.code != http.StatusUnauthorized {
			t.Fatalf("failure %d = %d", i, r.code)
		}
	}
	if ts.banner.count() != 1 || ts.banner.bans[0].String() != "127.0.0.1" {
		t.Errorf("bans = %v, want 127.0.0.1 once", ts.banner.bans)
	}
	r := ts.do(req{method: "POST", path: "/api/v1/session", body: loginRequest{AdminUser, ts.initialPassword()}})
	if r.code != http.StatusTooManyRequests || r.errBody(t).Code != CodeTooMany {
		t.Errorf("login while locked out = %d %s, want 429", r.code, r.body)
	}
	if r := ts.do(req{method: "GET", path: "/api/v1/hosts", token: "kiln_whatever"}); r.code != http.StatusTooManyRequests {
		t.Errorf("token while locked out = %d, want 429", r.code)
	}
}

func TestTokens(t *testing.T) {
	ts := newTestServer(t)
	tok := ts.userWithToken("ci", store.RoleWrite, store.RoleWrite)
	if r := ts.do(req{method: "GET", path: "/api/v1/hosts", token: tok}); r.code != http.StatusOK {
		t.Errorf("GET hosts with a write token = %d %s", r.code, r.body)
	}
	// Tokens need no CSRF token; they may write hosts but not manage users.
	if r := ts.do(req{method: "POST", path: "/api/v1/hosts", token: tok, body: wire.HostInput{Name: "pc-01", MACs: []string{"52:54:00:00:00:01"}}}); r.code != http.StatusCreated {
		t.Errorf("POST hosts with a write token = %d %s", r.code, r.body)
	}
	ci := ts.login("ci", "password-of-ci")
	if r := ts.do(req{method: "POST", path: "/api/v1/tokens", as: ci, body: newToken{Name: "x", Scope: "admin"}}); r.code != http.StatusUnprocessableEntity || r.errBody(t).Field != "scope" {
		t.Errorf("write user making an admin token = %d %s, want 422 on scope", r.code, r.body)
	}
	for _, bad := range []string{"Basic Zm9vOmJhcg==", "Bearer nope", "Bearer kiln_unknown"} {
		r := ts.do(req{method: "GET", path: "/api/v1/hosts", header: map[string]string{"Authorization": bad}})
		if r.code != http.StatusUnauthorized {
			t.Errorf("Authorization %q = %d, want 401", bad, r.code)
		}
	}
	// Listing: own tokens only; revoking makes it useless at once.
	r := ts.do(req{method: "GET", path: "/api/v1/tokens", token: tok})
	var list []tokenJSON
	json.Unmarshal(r.body, &list)
	if len(list) != 1 || list[0].User != "ci" || !list[0].Active || list[0].LastUsed == nil || !strings.HasPrefix(tok, list[0].Prefix) {
		t.Fatalf("GET tokens = %s, want ci's one used token", r.body)
	}
	if r := ts.do(req{method: "DELETE", path: "/api/v1/tokens/" + itoa(list[0].ID), as: ci}); r.code != http.StatusNoContent {
		t.Errorf("revoke own token = %d %s", r.code, r.body)
	}
	if r := ts.do(req{method: "GET", path: "/api/v1/hosts", token: tok}); r.code != http.StatusUnauthorized {
		t.Errorf("revoked token = %d, want 401", r.code)
	}
	// A token never outranks its owner: demote the owner, the admin token reads only.
	adminTok := ts.userWithToken("ops", store.RoleAdmin, store.RoleAdmin)
	a := ts.admin()
	if r := ts.do(req{method: "PATCH", path: "/api/v1/users/ops", as: a, body: map[string]string{"role": "read"}}); r.code != http.StatusOK {
		t.Fatalf("demote = %d %s", r.code, r.body)
	}
	if r := ts.do(req{method: "GET", path: "/api/v1/users", token: adminTok}); r.code != http.StatusForbidden {
		t.Errorf("admin token of a demoted owner = %d, want 403", r.code)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestUsers(t *testing.T) {
	ts := newTestServer(t)
	a := ts.admin()
	for _, tc := range []struct {
		body      any
		wantCode  int
		wantField string
	}{
		{newUser{Name: "Bob", Role: "write", Password: "long enough pw"}, http.StatusCreated, ""},
		{newUser{Name: "bob", Role: "write", Password: "long enough pw"}, http.StatusConflict, "name"},
		{newUser{Name: "carol", Role: "root", Password: "long enough pw"}, http.StatusUnprocessableEntity, "role"},
		{newUser{Name: "dave", Role: "read", Password: "short"}, http.StatusUnprocessableEntity, "password"},
		{map[string]any{"name": "erin", "role": "read", "password": "long enough pw", "admin": true}, http.StatusBadRequest, "admin"},
	} {
		r := ts.do(req{method: "POST", path: "/api/v1/users", as: a, body: tc.body})
		if r.code != tc.wantCode || (tc.wantField != "" && r.errBody(t).Field != tc.wantField) {
			t.Errorf("POST users %+v = %d %s, want %d on %q", tc.body, r.code, r.body, tc.wantCode, tc.wantField)
		}
	}
	if r := ts.do(req{method: "DELETE", path: "/api/v1/users/admin", as: a}); r.code != http.StatusConflict {
		t.Errorf("deleting the last admin = %d %s, want 409", r.code, r.body)
	}
	// A read user may change its own password, not bob's.
	ts.do(req{method: "POST", path: "/api/v1/users", as: a, body: newUser{Name: "viewer", Role: "read", Password: "viewer password"}})
	v := ts.login("viewer", "viewer password")
	if r := ts.do(req{method: "PUT", path: "/api/v1/users/bob/password", as: v, body: passwordChange{Password: "another password"}}); r.code != http.StatusForbidden {
		t.Errorf("read user changing bob's password = %d, want 403", r.code)
	}
	if r := ts.do(req{method: "PUT", path: "/api/v1/users/viewer/password", as: v, body: passwordChange{"viewer password", "a better password"}}); r.code != http.StatusNoContent {
		t.Errorf("read user changing its own password = %d %s, want 204", r.code, r.body)
	}
	r := ts.do(req{method: "GET", path: "/api/v1/users", as: a})
	var us []userJSON
	json.Unmarshal(r.body, &us)
	if len(us) != 3 || us[0].Name != "admin" || us[1].Name != "bob" {
		t.Errorf("GET users = %s", r.body)
	}
	if r := ts.do(req{method: "DELETE", path: "/api/v1/users/bob", as: a}); r.code != http.StatusNoContent {
		t.Errorf("DELETE bob = %d", r.code)
	}
}

func TestTrustLAN(t *testing.T) {
	ts := newTestServer(t, func(o *Options) {
		o.Config.API = config.API{TrustLAN: true, TrustedNetworks: []string{"127.0.0.0/8"}, TrustedRole: "write"}
	})
	if r := ts.do(req{method: "GET", path: "/api/v1/hosts"}); r.code != http.StatusOK {
		t.Errorf("trusted anonymous GET = %d %s", r.code, r.body)
	}
	h := wire.HostInput{Name: "pc-01", MACs: []string{"52:54:00:00:00:01"}}
	if r := ts.do(req{method: "POST", path: "/api/v1/hosts", body: h}); r.code != http.StatusForbidden || r.errBody(t).Code != CodeCSRF {
		t.Errorf("trusted POST without X-CSRF-Token = %d %s, want 403 csrf", r.code, r.body)
	}
	if r := ts.do(req{method: "POST", path: "/api/v1/hosts", body: h, header: map[string]string{"X-CSRF-Token": "1"}}); r.code != http.StatusCreated {
		t.Errorf("trusted POST = %d %s, want 201", r.code, r.body)
	}
	if r := ts.do(req{method: "GET", path: "/api/v1/users"}); r.code != http.StatusForbidden {
		t.Errorf("trusted (write) GET users = %d, want 403", r.code)
	}
	// Off by default: the same request without the config is refused.
	plain := newTestServer(t)
	if r := plain.do(req{method: "GET", path: "/api/v1/hosts"}); r.code != http.StatusUnauthorized {
		t.Errorf("anonymous GET without trust_lan = %d, want 401", r.code)
	}
}

// credentialRoutes must keep Route.Credentials: they hand out or change
// passwords, accounts, tokens or a held host's key and shell.
var credentialRoutes = []string{
	"POST /api/v1/users",
	"PATCH /api/v1/users/{name}",
	"DELETE /api/v1/users/{name}",
	"PUT /api/v1/users/{name}/password",
	"POST /api/v1/tokens",
	"DELETE /api/v1/tokens/{id}",
	"GET /api/v1/vetting/runs/{id}/ssh",
	"GET /api/v1/vetting/runs/{id}/tunnel",
}

// TestTrustedCallersNeverGetCredentials: with api.trust_lan at role admin,
// an anonymous caller of a trusted network still cannot read a held host's
// SSH private key, reset the admin password, or call any other credentials
// route (issue 11, finding 12); a logged-in admin can.
func TestTrustedCallersNeverGetCredentials(t *testing.T) {
	ts := newTestServer(t, withVetting, func(o *Options) {
		o.Config.API = config.API{TrustLAN: true, TrustedNetworks: []string{"127.0.0.0/8"}, TrustedRole: "admin"}
	})
	var got []string
	for _, rt := range ts.Routes() {
		if rt.Credentials {
			got = append(got, rt.Pattern())
		}
	}
	if !slices.Equal(got, credentialRoutes) {
		t.Errorf("credentials routes = %q, want %q", got, credentialRoutes)
	}
	if r := ts.do(req{method: "GET", path: "/api/v1/settings"}); r.code != http.StatusOK {
		t.Fatalf("trusted anonymous GET settings = %d %s, want 200 (trust_lan works)", r.code, r.body)
	}
	run := heldRun(t, ts)
	csrf := map[string]string{"X-CSRF-Token": "1"}
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/vetting/runs/" + run + "/ssh"},
		{"GET", "/api/v1/vetting/runs/" + run + "/tunnel"},
		{"PUT", "/api/v1/users/admin/password"},
		{"POST", "/api/v1/users"},
		{"PATCH", "/api/v1/users/admin"},
		{"DELETE", "/api/v1/users/admin"},
		{"POST", "/api/v1/tokens"},
		{"DELETE", "/api/v1/tokens/1"},
	} {
		body := map[string]any{}
		switch c.path {
		case "/api/v1/users/admin/password":
			body = map[string]any{"password": "taken over by a PXE client"}
		case "/api/v1/users":
			body = map[string]any{"name": "intruder", "role": "admin", "password": "taken over by a PXE client"}
		}
		r := ts.do(req{method: c.method, path: c.path, body: body, header: csrf})
		if r.code != http.StatusUnauthorized || r.errBody(t).Code != CodeUnauthenticated || strings.Contains(string(r.body), "PRIVATE KEY") {
			t.Errorf("trusted anonymous %s %s = %d %s, want 401 unauthenticated", c.method, c.path, r.code, r.body)
		}
	}
	// Nothing changed: the initial password still logs in, no account was
	// added, and the logged-in admin gets the key.
	a := ts.admin()
	if r := ts.do(req{method: "GET", path: "/api/v1/users", as: a}); strings.Contains(string(r.body), "intruder") {
		t.Errorf("GET users = %s: the trusted caller made an account", r.body)
	}
	if r := ts.do(req{method: "GET", path: "/api/v1/vetting/runs/" + run + "/ssh", as: a}); r.code != http.StatusOK || !strings.Contains(string(r.body), "PRIVATE KEY") {
		t.Errorf("admin session GET ssh = %d %s, want 200 with the key", r.code, r.body)
	}
}

// heldRun makes a vetting run of a new host that holds it for SSH and
// returns the run's id as the API spells it.
func heldRun(t *testing.T, ts *testServer) string {
	t.Helper()
	ctx := context.Background()
	if _, err := ts.db.CreateHost(ctx, store.Host{Name: "held-01", MACs: []string{"52:54:00:00:0a:01"}, BootProfile: store.BootVet}); err != nil {
		t.Fatal(err)
	}
	hold := true
	r, err := ts.o.Vetting.Start(ctx, orchestrator.StartRequest{Host: "held-01", Hold: &hold})
	if err != nil {
		t.Fatal(err)
	}
	if r.SSHPrivate == "" {
		t.Fatalf("run %d has no SSH key", r.ID)
	}
	if _, err := ts.db.UpdateVetRun(ctx, r.ID, func(v *store.VetRun, _ *store.VetUpdate) error {
		v.State, v.HoldAddr, v.HoldHostKey = orchestrator.StateHolding, "10.9.0.60:22", "ssh-ed25519 AAAAC3"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return strconv.FormatInt(r.ID, 10)
}
