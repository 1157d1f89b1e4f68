package api

import (
	"net/http"

	"kiln.dev/kiln/init/supervisor/supervisorapi"
	"kiln.dev/kiln/services/api/wire"
)

// apiRoutes is the API: every route, who may call it and what it exchanges.
// The OpenAPI description and the authorization tests are made from this list.
func (s *Server) apiRoutes() []Route {
	h := func(f http.HandlerFunc) http.Handler { return f }
	return []Route{
		// Anyone.
		{Method: "GET", Path: "/api/v1/openapi.json", Scope: ScopePublic, Summary: "This API's OpenAPI 3.1 description",
			RawResponse: "application/json", handler: h(s.openAPI)},
		{Method: "GET", Path: "/api/v1/info", Scope: ScopePublic, Summary: "What the login page shows (site name, banner, version)",
			Response: wire.Info{}, handler: h(s.info)},
		{Method: "POST", Path: "/api/v1/session", Scope: ScopePublic, Summary: "Log in: check user and password, set the session cookie",
			Request: wire.LoginRequest{}, Response: wire.Session{}, Status: http.StatusCreated, handler: h(s.login)},
		{Method: "GET", Path: "/api/v1/status", Scope: ScopePublic, Summary: "The supervisor's status, for monitoring (as GET /api/v1/services)",
			Response: supervisorapi.Status{}, handler: h(s.rawStatus)},

		// Any logged-in caller.
		{Method: "GET", Path: "/api/v1/session", Scope: ScopeRead, Summary: "Who is calling, and the session's CSRF token",
			Response: wire.Session{}, handler: h(s.session)},
		{Method: "DELETE", Path: "/api/v1/session", Scope: ScopeWrite, Self: true, Summary: "Log out (end this browser session)",
			Status: http.StatusNoContent, handler: h(s.logout)},
		{Method: "GET", Path: "/api/v1/hosts", Scope: ScopeRead, Summary: "Every host with its current lease and newest boot event",
			Response: []wire.Host{}, handler: h(s.listHosts)},
		{Method: "GET", Path: "/api/v1/hosts/export", Scope: ScopeRead, Summary: "Download every host as a YAML or CSV file",
			Query: []string{"format: yaml (default) or csv"}, RawResponse: "application/yaml", handler: h(s.exportHosts)},
		{Method: "GET", Path: "/api/v1/hosts/{name}", Scope: ScopeRead, Summary: "One host",
			Response: wire.Host{}, handler: h(s.getHost)},
		{Method: "GET", Path: "/api/v1/hosts/{name}/events", Scope: ScopeRead, Summary: "A host's boot timeline (events of all its MACs), newest first",
			Query: []string{"limit: at most this many (default 100)"}, Response: []wire.BootEvent{}, handler: h(s.hostEvents)},
		{Method: "GET", Path: "/api/v1/registrations", Scope: ScopeRead, Summary: "Machines' registrations at their console waiting for approval (or rejected)",
			Response: []registrationJSON{}, handler: h(s.listRegistrations)},
		{Method: "GET", Path: "/api/v1/leases", Scope: ScopeRead, Summary: "DHCP leases, by address",
			Query: []string{"subnet: only this config subnet", "active: true for unexpired leases only"}, Response: []wire.Lease{}, handler: h(s.listLeases)},
		{Method: "GET", Path: "/api/v1/boot-events", Scope: ScopeRead, Summary: "Boot events: newest of all, of one MAC, or after an id",
			Query:    []string{"mac: only this MAC (newest first)", "after: events with a higher id, oldest first", "limit: at most this many (default 100)"},
			Response: []wire.BootEvent{}, handler: h(s.bootEvents)},
		{Method: "GET", Path: "/api/v1/events", Scope: ScopeRead, Summary: "Server-Sent Events: hosts, leases, boot (id = event id; resumes with Last-Event-ID) and status",
			RawResponse: "text/event-stream", handler: h(s.events)},
		{Method: "GET", Path: "/api/v1/services", Scope: ScopeRead, Summary: "Every service's state from the supervisor",
			Response: supervisorapi.Status{}, handler: h(s.services)},
		{Method: "GET", Path: "/api/v1/services/{name}/logs", Scope: ScopeRead, Summary: "A service's log lines; with Accept: text/event-stream and follow=1 a live stream that resumes with Last-Event-ID",
			Query:    []string{"since: lines after this seq (default 0: all kept)", "tail: only the last N lines", "follow: 1 to keep streaming (event stream only)"},
			Response: []supervisorapi.Line{}, handler: h(s.serviceLogs)},
		{Method: "GET", Path: "/api/v1/settings", Scope: ScopeRead, Summary: "Settings, and the appliance's read-only configuration",
			Response: settingsResponse{}, handler: h(s.getSettings)},
		{Method: "GET", Path: "/api/v1/tokens", Scope: ScopeRead, Summary: "API tokens: the caller's own (an admin: all)",
			Response: []wire.Token{}, handler: h(s.listTokens)},

		// Writers.
		{Method: "POST", Path: "/api/v1/hosts", Scope: ScopeWrite, Summary: "Register a host (dry_run=1: only validate)",
			Query: []string{"dry_run: 1 to validate without storing (204 when valid)"}, Request: wire.HostInput{}, Response: wire.Host{}, Status: http.StatusCreated, handler: h(s.createHost)},
		{Method: "PUT", Path: "/api/v1/hosts/{name}", Scope: ScopeWrite, Summary: "Replace a host (all fields; may rename it)",
			Query: []string{"dry_run: 1 to validate without storing (204 when valid)"}, Request: wire.HostInput{}, Response: wire.Host{}, handler: h(s.updateHost)},
		{Method: "DELETE", Path: "/api/v1/hosts/{name}", Scope: ScopeWrite, Summary: "Remove a host (its leases and boot events stay)",
			Status: http.StatusNoContent, handler: h(s.deleteHost)},
		{Method: "POST", Path: "/api/v1/hosts/import", Scope: ScopeWrite, Summary: "Import a YAML or CSV host file: all hosts or, on any error, none",
			Query: []string{"format: yaml (default) or csv", "replace: true to update hosts that exist"}, RawRequest: "application/yaml",
			Response: wire.ImportResult{}, handler: h(s.importHosts)},
		{Method: "POST", Path: "/api/v1/registrations/approve", Scope: ScopeWrite, Summary: "Approve machines' registrations at their console (each by MAC or the name it asks for): each becomes its host",
			Request: registrationDecision{}, Response: []registrationResult{}, handler: s.decideRegistrations(true)},
		{Method: "POST", Path: "/api/v1/registrations/reject", Scope: ScopeWrite, Summary: "Reject machines' registrations; the reason is shown on their console, which asks again",
			Request: registrationDecision{}, Response: []registrationResult{}, handler: s.decideRegistrations(false)},
		{Method: "DELETE", Path: "/api/v1/leases/{ip}", Scope: ScopeWrite, Summary: "Forget a lease",
			Status: http.StatusNoContent, handler: h(s.deleteLease)},

		// Admins (and, where Self, each account for itself).
		{Method: "PUT", Path: "/api/v1/settings", Scope: ScopeAdmin, Summary: "Change settings (only the fields sent)",
			Request: settingsUpdate{}, Response: settingsResponse{}, handler: h(s.putSettings)},
		{Method: "POST", Path: "/api/v1/services/{name}/restart", Scope: ScopeAdmin, Summary: "Restart a service",
			Status: http.StatusAccepted, handler: h(s.restartService)},
		{Method: "GET", Path: "/api/v1/users", Scope: ScopeAdmin, Summary: "Operator accounts",
			Response: []userJSON{}, handler: h(s.listUsers)},
		{Method: "POST", Path: "/api/v1/users", Scope: ScopeAdmin, Credentials: true, Summary: "Create an account",
			Request: newUser{}, Response: userJSON{}, Status: http.StatusCreated, handler: h(s.createUser)},
		{Method: "PATCH", Path: "/api/v1/users/{name}", Scope: ScopeAdmin, Credentials: true, Summary: "Change an account's role or disable it (ends its sessions)",
			Request: userUpdate{}, Response: userJSON{}, handler: h(s.updateUser)},
		{Method: "DELETE", Path: "/api/v1/users/{name}", Scope: ScopeAdmin, Credentials: true, Summary: "Remove an account with its tokens",
			Status: http.StatusNoContent, handler: h(s.deleteUser)},
		{Method: "PUT", Path: "/api/v1/users/{name}/password", Scope: ScopeAdmin, Credentials: true, Self: true, Summary: "Change a password (one's own needs current_password; ends other sessions)",
			Request: passwordChange{}, Status: http.StatusNoContent, handler: h(s.setPassword)},
		{Method: "POST", Path: "/api/v1/tokens", Scope: ScopeAdmin, Credentials: true, Self: true, Summary: "Make an API token for one's own account (secret shown once)",
			Request: wire.NewToken{}, Response: wire.CreatedToken{}, Status: http.StatusCreated, handler: h(s.createToken)},
		{Method: "DELETE", Path: "/api/v1/tokens/{id}", Scope: ScopeAdmin, Credentials: true, Self: true, Summary: "Revoke a token (one's own; an admin: any)",
			Status: http.StatusNoContent, handler: h(s.revokeToken)},
	}
}
