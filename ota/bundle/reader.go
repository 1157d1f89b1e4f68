package bundle

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
)

// Options say what a Reader accepts.
type Options struct {
	// Keys are the trusted public keys (at least one).
	Keys []PublicKey
	// Compatible is the appliance's compatible string; Compatible() if empty.
	Compatible string
	// MinGeneration is the lowest generation accepted: the running generation
	// plus one (anti-rollback). 0 accepts any.
	MinGeneration int
	// Limits bound member sizes (defaults for zero fields).
	Limits Limits
	// Check, if set, vets the verified manifest before any payload is read
	// (for example: refuse a generation that failed before).
	Check func(Manifest) error
}

// Reader reads a bundle in one pass. NewReader has verified the manifest;
// Next hands out the payloads in order.
type Reader struct {
	tr     *tar.Reader
	limits Limits
	// Manifest is the verified manifest and ManifestBytes its signed bytes.
	Manifest      Manifest
	ManifestBytes []byte
	// KeyID names the key that signed it.
	KeyID string
	// next indexes PayloadNames; cur is the payload being read.
	next int
	cur  *PayloadReader
}

// NewReader reads and verifies manifest.json and manifest.sig from r and
// checks the compatible string, the generation and o.Check. Nothing of r
// beyond the signature has been read when it returns.
func NewReader(r io.Reader, o Options) (*Reader, error) {
	if len(o.Keys) == 0 {
		return nil, fmt.Errorf("verifying the bundle: %w (the image has no /etc/kiln/ota-keys/*.pub: build it with --ota-key)", ErrNoKeys)
	}
	compat := o.Compatible
	if compat == "" {
		compat = Compatible()
	}
	br := &Reader{tr: tar.NewReader(r), limits: o.Limits.withDefaults()}
	mhdr, err := br.member(ManifestName, br.limits.Manifest)
	if err != nil {
		return nil, err
	}
	if br.ManifestBytes, err = readAll(br.tr, mhdr.Size); err != nil {
		return nil, err
	}
	shdr, err := br.member(SignatureName, maxSignature)
	if err != nil {
		return nil, err
	}
	sig, err := readAll(br.tr, shdr.Size)
	if err != nil {
		return nil, err
	}
	// The signature comes first: nothing unsigned is interpreted beyond
	// what finding it needs.
	if br.KeyID, err = Verify(br.ManifestBytes, sig, o.Keys); err != nil {
		return nil, err
	}
	if br.Manifest, err = ParseManifest(br.ManifestBytes, br.limits); err != nil {
		return nil, err
	}
	m := br.Manifest
	if m.Compatible != compat {
		return nil, fmt.Errorf("%w: the bundle is for %q, this appliance is %q", ErrIncompatible, m.Compatible, compat)
	}
	if o.MinGeneration > 0 && m.Generation < o.MinGeneration {
		return nil, fmt.Errorf("%w: bundle generation %d (version %s) is not above the running generation %d; build the bundle with a higher --generation",
			ErrGeneration, m.Generation, m.Version, o.MinGeneration-1)
	}
	if o.Check != nil {
		if err := o.Check(m); err != nil {
			return nil, err
		}
	}
	return br, nil
}

// Next returns the next payload, in the order vmlinuz, initrd, root.squashfs;
// after the last it checks that the bundle ends and returns io.EOF. A payload
// not read to its end is read (and verified) by Next.
func (br *Reader) Next() (*PayloadReader, error) {
	if br.cur != nil {
		if _, err := io.Copy(io.Discard, br.cur); err != nil {
			return nil, err
		}
		br.cur = nil
	}
	if br.next == len(PayloadNames) {
		hdr, err := br.tr.Next()
		switch {
		case errors.Is(err, io.EOF):
			return nil, io.EOF
		case err != nil:
			return nil, fmt.Errorf("%w: after %s: %v", ErrFormat, RootName, err)
		}
		return nil, fmt.Errorf("%w: unexpected member %q after %s (a bundle ends with its last payload)", ErrFormat, hdr.Name, RootName)
	}
	name := PayloadNames[br.next]
	want, _ := br.Manifest.Payload(name)
	hdr, err := br.member(name, br.limits.payload(name))
	if err != nil {
		return nil, err
	}
	if hdr.Size != want.Size {
		return nil, fmt.Errorf("%w: member %s is %d bytes, the manifest says %d", ErrCorrupt, name, hdr.Size, want.Size)
	}
	br.next++
	br.cur = &PayloadReader{Payload: want, r: br.tr, h: sha256.New()}
	return br.cur, nil
}

// member reads the next tar header and checks it is the regular file name
// of at most limit bytes.
func (br *Reader) member(name string, limit int64) (*tar.Header, error) {
	hdr, err := br.tr.Next()
	switch {
	case errors.Is(err, io.EOF):
		return nil, fmt.Errorf("%w: the bundle ends before %s", ErrCorrupt, name)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%w: the bundle ends inside a header before %s", ErrCorrupt, name)
	case err != nil:
		return nil, fmt.Errorf("%w: reading the header of %s: %v", ErrFormat, name, err)
	}
	if hdr.Name != name {
		switch {
		case strings.ContainsAny(hdr.Name, "/\\") || strings.Contains(hdr.Name, ".."):
			return nil, fmt.Errorf("%w: member path %q: bundle members are plain names (expected %s)", ErrFormat, hdr.Name, name)
		case isMemberName(hdr.Name):
			return nil, fmt.Errorf("%w: member %s out of order: expected %s (order: %s, %s, %s)", ErrFormat, hdr.Name, name,
				ManifestName, SignatureName, strings.Join(PayloadNames, ", "))
		}
		return nil, fmt.Errorf("%w: unknown member %q, expected %s", ErrFormat, hdr.Name, name)
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("%w: member %s is of tar type %q, want a regular file", ErrFormat, name, hdr.Typeflag)
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse") {
			return nil, fmt.Errorf("%w: member %s is a sparse file", ErrFormat, name)
		}
	}
	if hdr.Size < 0 || hdr.Size > limit {
		return nil, fmt.Errorf("%w: member %s is %d bytes, the limit is %d", ErrTooLarge, name, hdr.Size, limit)
	}
	return hdr, nil
}

func isMemberName(n string) bool {
	return n == ManifestName || n == SignatureName || slices.Contains(PayloadNames, n)
}

// readAll reads exactly n bytes of the current member.
func readAll(r io.Reader, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return b, nil
}

// PayloadReader streams one payload, hashing it. Its final Read returns
// io.EOF only when size and SHA-256 match the manifest, ErrCorrupt otherwise.
type PayloadReader struct {
	Payload
	r    io.Reader
	h    hash.Hash
	n    int64
	done error // sticky result once the end was reached
}

func (p *PayloadReader) Read(b []byte) (int, error) {
	if p.done != nil {
		return 0, p.done
	}
	n, err := p.r.Read(b)
	p.h.Write(b[:n])
	p.n += int64(n)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, io.EOF):
		p.done = p.finish()
		return n, p.done
	case errors.Is(err, io.ErrUnexpectedEOF):
		p.done = fmt.Errorf("%w: %s ends after %d of %d bytes", ErrCorrupt, p.Name, p.n, p.Size)
		return n, p.done
	}
	return n, err
}

func (p *PayloadReader) finish() error {
	if p.n != p.Size {
		return fmt.Errorf("%w: %s is %d bytes, the manifest says %d", ErrCorrupt, p.Name, p.n, p.Size)
	}
	if got := hex.EncodeToString(p.h.Sum(nil)); got != p.SHA256 {
		return fmt.Errorf("%w: %s has SHA-256 %s, the manifest says %s", ErrCorrupt, p.Name, got, p.SHA256)
	}
	return io.EOF
}
