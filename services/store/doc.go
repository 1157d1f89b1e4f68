// Package store is kiln's machine database: hosts and their MACs, DHCP leases,
// boot events, and the operator API's accounts, sessions, tokens and settings
// (accounts.go), kept in SQLite (modernc.org/sqlite, pure Go) at
// <state>/kiln.db. It is the only package that imports an SQL driver; every
// other package goes through its typed methods.
//
// # Opening and migrations
//
// Open puts the database in WAL mode with a busy timeout and foreign keys on,
// then applies the embedded migrations (migrations/NNNN_name.sql) that are not
// yet recorded in schema_migrations, in one transaction. Migrations are append
// only: never edit a released file, add the next number. A database written by
// a newer kiln (a version this code does not know) is refused with
// ErrSchemaNewer rather than guessed at. Several processes (dhcp, dns, api) may
// open the same file; SQLite serializes writers, and every write here is a
// single short IMMEDIATE transaction. Within one process writers queue on a
// mutex instead of SQLite's busy handler, which sleeps in steps of up to
// 100 ms.
//
// The SQL is kept portable (standard types, INSERT … RETURNING, ON CONFLICT …
// DO UPDATE, no triggers, times as integer milliseconds since the epoch) so a
// PostgreSQL backend can be added for a fleet of appliances.
//
// # Noticing changes
//
// DataVersion returns a counter bumped by every change to hosts, MACs or the
// address/name of a lease (not by lease renewals or boot events). A process
// such as the DNS server polls it and reloads only when it moved.
//
// # Errors
//
// Invalid input and conflicts come back as Errors, a list of *FieldError that
// name the field the way the import formats spell it ("macs[1]: 52:54:00:00:00:01
// already belongs to host pc-07"); errors.Is works with ErrInvalid, ErrConflict
// and ErrNotFound. Operations touching several rows run in one transaction:
// either all of it is stored or nothing.
//
// # Values
//
// MACs are stored lower-case colon separated (NormalizeMAC). Option 82 match
// keys (circuit-id, remote-id) are text: printable ASCII as is, anything else as
// "0x" followed by lower-case hex (Option82Text).
//
// # Secrets at rest
//
// kiln.db, -wal and -shm are 0600 (FileMode). Secrets only checked are kept
// as hashes; the ones kiln must read back (a vetting run's token, rendered
// into its boot script, and a held run's SSH private key) are sealed with
// AES-256-GCM under the key in secrets.key beside the database (seal.go), so
// a copy of kiln.db alone reveals none of them. Open seals plaintext values
// an older kiln stored.
package store
