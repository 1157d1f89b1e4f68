// Package bundle owns kiln's OTA update bundle: an uncompressed tar whose
// members come in a fixed order — manifest.json (compatible string, version,
// generation and every payload's size and SHA-256), manifest.sig (an ed25519
// signature over the exact manifest bytes, naming the signing key), then the
// payloads vmlinuz, initrd and root.squashfs. It also owns the signing keys
// (PEM files: PKCS#8 private, PKIX public).
//
// # Reading
//
// Reader reads a bundle as a stream, in one pass, so an appliance installs
// straight from an HTTP upload or download without storing the bundle. It
// verifies the manifest's signature against the trusted keys and checks the
// compatible string and the generation before handing out the first payload
// byte; each payload is hashed while it is read and its final Read reports
// ErrCorrupt instead of io.EOF when the bytes do not match the manifest. A
// caller therefore commits nothing until the payload it streams ends without
// an error. Anything unexpected is refused: unknown, missing, repeated or
// reordered members, names other than the exact expected ones (no "./", "/",
// "..", links or directories), sizes above the limits or different from the
// manifest, unknown manifest fields, trailing members after the last payload.
//
// # Writing
//
// Write produces the same order deterministically (USTAR headers with fixed
// owner, mode and time), so the same payloads, manifest and key give the same
// bundle bytes.
package bundle
