package bundle

import "errors"

// Errors a caller may branch on; every refusal wraps one of them.
var (
	// ErrFormat: the bundle is not a well-formed kiln bundle (member names,
	// order, types, manifest fields, trailing data).
	ErrFormat = errors.New("malformed update bundle")
	// ErrSignature: the manifest signature does not verify.
	ErrSignature = errors.New("bad bundle signature")
	// ErrUnknownKey: the bundle is signed by a key the appliance does not trust.
	ErrUnknownKey = errors.New("bundle signed by an unknown key")
	// ErrNoKeys: there are no trusted keys to verify with.
	ErrNoKeys = errors.New("no trusted update keys")
	// ErrIncompatible: the compatible string is not this appliance's.
	ErrIncompatible = errors.New("bundle is for another kind of appliance")
	// ErrGeneration: the generation is not newer than the running one.
	ErrGeneration = errors.New("bundle generation is not newer than the running one")
	// ErrTooLarge: a member is larger than its limit.
	ErrTooLarge = errors.New("bundle member too large")
	// ErrCorrupt: a payload's bytes do not match the manifest's SHA-256, or
	// the bundle ends early.
	ErrCorrupt = errors.New("corrupt or truncated bundle payload")
)
