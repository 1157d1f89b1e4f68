package bundle

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"kiln.dev/kiln/image/verity"
)

// Member names, in the order they appear in a bundle.
const (
	ManifestName  = "manifest.json"
	SignatureName = "manifest.sig"
	KernelName    = "vmlinuz"
	InitrdName    = "initrd"
	RootName      = "root.squashfs"
)

// PayloadNames lists the payloads in bundle order.
var PayloadNames = []string{KernelName, InitrdName, RootName}

// Format is the manifest format version this package reads and writes.
const Format = 1

// MaxGeneration is the highest generation a boot entry can carry (8 digits).
const MaxGeneration = 99999999

// Compatible returns the compatible string of the running build, e.g.
// "kiln-x86_64": an appliance installs only bundles that carry it.
func Compatible() string {
	arch := runtime.GOARCH
	switch arch {
	case "amd64":
		arch = "x86_64"
	case "arm64":
		arch = "aarch64"
	}
	return "kiln-" + arch
}

// Manifest describes a bundle; its exact bytes are what the signature covers.
type Manifest struct {
	Format     int       `json:"format"`
	Compatible string    `json:"compatible"`
	Version    string    `json:"version"`
	Generation int       `json:"generation"`
	Payloads   []Payload `json:"payloads"`
	// RootVerity is the kiln.verity value (image/verity.Params) of the root
	// payload, which holds the squashfs followed by its dm-verity hash tree.
	// Signed with the rest, it is what the installed boot entry carries, so
	// stage 1 mounts only the root this manifest's signer built.
	RootVerity string `json:"root_verity,omitempty"`
}

// Payload is one payload's name, size and SHA-256 (lower-case hex).
type Payload struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Payload returns the named payload's entry.
func (m Manifest) Payload(name string) (Payload, bool) {
	for _, p := range m.Payloads {
		if p.Name == name {
			return p, true
		}
	}
	return Payload{}, false
}

// Marshal returns the manifest's canonical bytes (indented JSON, trailing newline).
func (m Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(Limits{}); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseManifest decodes manifest bytes strictly (unknown fields and trailing
// data are errors) and validates them against limits.
func ParseManifest(b []byte, l Limits) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest.json: %v", ErrFormat, err)
	}
	if dec.More() {
		return Manifest{}, fmt.Errorf("%w: manifest.json: data after the JSON object", ErrFormat)
	}
	if err := m.Validate(l); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// Validate checks the manifest's fields; a zero Limits checks no sizes.
func (m Manifest) Validate(l Limits) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if m.Format != Format {
		bad("format %d: this kiln reads format %d (a newer kiln made the bundle: update in steps)", m.Format, Format)
	}
	if m.Compatible == "" || !printable(m.Compatible) {
		bad("compatible %q: must be a non-empty printable string", m.Compatible)
	}
	if m.Version == "" || len(m.Version) > 64 || !printable(m.Version) || strings.ContainsAny(m.Version, "\"\\") {
		bad("version %q: must be 1-64 printable characters without quotes or backslashes", m.Version)
	}
	if m.Generation < 1 || m.Generation > MaxGeneration {
		bad("generation %d: must be 1 to %d", m.Generation, MaxGeneration)
	}
	if len(m.Payloads) != len(PayloadNames) {
		bad("payloads: %d listed, want exactly %s in that order", len(m.Payloads), strings.Join(PayloadNames, ", "))
	}
	for i, p := range m.Payloads {
		if i < len(PayloadNames) && p.Name != PayloadNames[i] {
			bad("payloads[%d]: name %q, want %q (payloads are %s, in that order)", i, p.Name, PayloadNames[i], strings.Join(PayloadNames, ", "))
		}
		if p.Size <= 0 {
			bad("payloads[%d] (%s): size %d must be positive", i, p.Name, p.Size)
		} else if max := l.payload(p.Name); max > 0 && p.Size > max {
			bad("payloads[%d] (%s): size %d is above the limit of %d bytes: %w", i, p.Name, p.Size, max, ErrTooLarge)
		}
		if d, err := hex.DecodeString(p.SHA256); err != nil || len(d) != 32 || p.SHA256 != strings.ToLower(p.SHA256) {
			bad("payloads[%d] (%s): sha256 %q is not 64 lower-case hex digits", i, p.Name, p.SHA256)
		}
	}
	if m.RootVerity != "" {
		if vp, err := verity.ParseParams(m.RootVerity); err != nil {
			bad("root_verity: %v", err)
		} else if root, ok := m.Payload(RootName); ok && root.Size != vp.Size() {
			bad("root_verity: %d data blocks and their hash tree take %d bytes, but the %s payload has %d", vp.DataBlocks, vp.Size(), RootName, root.Size)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: manifest.json: %w", ErrFormat, err)
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// Limits bound member sizes; zero fields mean the defaults.
type Limits struct {
	Manifest int64 // manifest.json; default 64 KiB
	Kernel   int64 // default 128 MiB
	Initrd   int64 // default 512 MiB
	Root     int64 // default 4 GiB; an installer passes its partition size
}

// Default limits.
const (
	DefaultMaxManifest = 64 << 10
	DefaultMaxKernel   = 128 << 20
	DefaultMaxInitrd   = 512 << 20
	DefaultMaxRoot     = 4 << 30
	maxSignature       = 1 << 10
)

func (l Limits) withDefaults() Limits {
	if l.Manifest <= 0 {
		l.Manifest = DefaultMaxManifest
	}
	if l.Kernel <= 0 {
		l.Kernel = DefaultMaxKernel
	}
	if l.Initrd <= 0 {
		l.Initrd = DefaultMaxInitrd
	}
	if l.Root <= 0 {
		l.Root = DefaultMaxRoot
	}
	return l
}

// payload returns the limit for a payload name (0: none given).
func (l Limits) payload(name string) int64 {
	switch name {
	case KernelName:
		return l.Kernel
	case InitrdName:
		return l.Initrd
	case RootName:
		return l.Root
	}
	return 0
}
