// Package backup owns kiln's backup archive: what of the state directory and
// config goes in, the encrypted file format, and restoring an archive into a
// state directory without losing what was there.
//
// # Format
//
// A backup is an age file (https://age-encryption.org/v1): a versioned
// header authenticated with HMAC-SHA-256, then the payload in 64 KiB
// ChaCha20-Poly1305 chunks whose last one is marked, so a wrong key, a
// truncated file and a changed byte are each detected. The file key is
// wrapped either by a passphrase (scrypt) or for an X25519 key (a key file
// made by "kiln backup keygen" or age-keygen). age was chosen over a format
// of our own because it is reviewed, specified, has several
// implementations, and lets an operator open a backup with Debian's age
// tool when no kiln is at hand.
//
// The payload is a gzip-compressed tar:
//
//	kiln-backup.json   header: format version, kiln version, schema, time, hostname
//	config/kiln.yaml   the config file, when there is one
//	state/…            the state directory; state/kiln.db is a consistent
//	                   online snapshot (VACUUM INTO), not the live file
//	manifest.json      last: every member's size and SHA-256, row counts
//
// The manifest comes last so that files are hashed while they are written
// (a file that changes meanwhile cannot mismatch its own entry); a restore
// reads everything into a staging directory and checks it against the
// manifest before it replaces anything.
package backup
