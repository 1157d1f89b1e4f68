// Package apiclient is the typed client of kiln's operator API (/api/v1):
// the credentials file kiln login writes, the certificate pinning it
// trusts, requests whose error answers become errors (ErrAuth,
// ErrNotFound) naming every problem, Server-Sent Event streams that resume
// where they stopped, and typed calls over the shapes in services/api/wire.
// The CLI (cmd/kiln) and the QEMU tests use it; it imports no server code.
package apiclient
