// Package api is kiln's operator API and web UI: a JSON API under /api/v1
// (hosts, leases, boot events, services and their logs, settings, accounts
// and tokens), its OpenAPI description, and the UI's embedded files under
// /ui/. The management service (services/mgmt) serves Server.Handler over
// HTTPS; other packages add routes with Server.Mount.
//
// # Routes and authorization
//
// Every route is a Route in one table (routes.go) naming its method, path
// and Scope: public, read, write or admin (store.Role's order). The wrapper
// every route goes through authenticates the caller, checks the scope and,
// for mutating requests from browsers, the CSRF token and the Origin. The
// OpenAPI description (GET /api/v1/openapi.json, docs/openapi.json) and the
// tests that try every mutating route anonymously and with a read token are
// made from that table, so a new route is described and covered without
// further work.
//
// # Authentication
//
//   - First start: with no account in the store, New creates "admin" with the
//     password from EnsureInitialPassword (random, <state>/api/initial-password,
//     0600). PID 1 calls EnsureInitialPassword before it starts services and
//     prints "kiln: admin password: …" on the console once; the recovery
//     console's banner shows it while it is unchanged. Changing the admin
//     password removes the file.
//   - Reset: RequestPasswordReset ("kiln password reset" from the recovery
//     shell) leaves a new password in <state>/api/password-reset; the API
//     applies it at its next login attempt or start (admin becomes an enabled
//     admin again, its sessions end).
//   - Browsers: POST /api/v1/session sets the kiln_session cookie (HttpOnly,
//     SameSite=Strict, Secure over HTTPS) and returns a CSRF token that every
//     mutating request echoes in X-CSRF-Token. Passwords are bcrypt hashes;
//     session ids and token secrets are stored as SHA-256 only.
//   - Scripts and the CLI: "Authorization: Bearer kiln_…" API tokens, scoped
//     read/write/admin (never above their owner's role), revocable.
//   - Failures (wrong password, unknown token) are logged; five from one
//     source (IPv4 address, IPv6 /64) within ten minutes lock it out for
//     fifteen and are reported to the Banner (the firewall's ban set). Per
//     account name, failures from anywhere back off exponentially (guard.go).
//   - api.trust_lan in the config (off unless set) lets callers from
//     api.trusted_networks act with api.trusted_role without credentials,
//     except on Credentials routes (accounts, passwords, tokens, SSH keys),
//     which always want a logged-in user. The config refuses trusted
//     networks that overlap a provisioning subnet.
//
// # Errors
//
// Every error is {"error":{"code","message","field"}} (ErrorBody), with
// "details" when there are several problems; codes are the Code* constants.
// JSON bodies are strict: the content type must be application/json, unknown
// fields and oversized bodies are refused, and writes happen in one store
// transaction, so a refused request stores nothing.
//
// # Live updates
//
// GET /api/v1/events is a Server-Sent Events stream fed by one poller
// shared by every stream (feed.go), which reads the store's change marks and
// the supervisor's status; each user holds at most maxStreamsPerUser
// streams. Service logs stream from the supervisor's control socket, each
// event carrying the line's seq as its id so a reconnecting browser resumes
// with Last-Event-ID.
package api
