// Package release makes the signed over-the-air bundles of a kiln image
// build's payloads (checking the root's dm-verity tree first, so a bundle
// never carries a slot stage 1 would refuse) and checks bundles as an
// appliance would.
package release

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"

	"kiln.dev/kiln/image"
	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/internal/atomicfile"
	"kiln.dev/kiln/ota/bundle"
)

// Built describes a bundle Build wrote.
type Built struct {
	SHA256   string
	Size     int64
	Manifest bundle.Manifest
	KeyID    string
}

// Build checks files.Root against files.RootVerity, signs a manifest of
// files with key and writes the bundle to out, replacing it atomically.
func Build(out, compatible, version string, generation int, files bundle.Files, key ed25519.PrivateKey) (Built, error) {
	if err := CheckRootVerity(files.Root, files.RootVerity); err != nil {
		return Built{}, err
	}
	m, err := bundle.NewManifest(compatible, version, generation, files)
	if err != nil {
		return Built{}, err
	}
	if err := atomicfile.Write(out, 0o666, func(f *os.File) error { return bundle.WriteFiles(f, m, key, files) }); err != nil {
		return Built{}, err
	}
	sum, size, err := image.HashFile(out)
	if err != nil {
		return Built{}, err
	}
	return Built{SHA256: sum, Size: size, Manifest: m, KeyID: bundle.KeyID(key.Public().(ed25519.PublicKey))}, nil
}

// CheckRootVerity rebuilds the root payload's hash tree and compares it with
// the tree in the payload and the root hash about to be signed: a bundle
// whose tree does not match would install a slot stage 1 refuses.
func CheckRootVerity(root, value string) error {
	p, err := verity.ParseParams(value)
	if err != nil {
		return fmt.Errorf("--root-verity: %w", err)
	}
	f, err := os.Open(root)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != p.Size() {
		return fmt.Errorf("root payload %s is %d bytes, but its verity value describes %d (data and tree): pass the root.squashfs and root.verity of the same kiln image build --payloads", root, st.Size(), p.Size())
	}
	if err := verity.Check(f, p); err != nil {
		return fmt.Errorf("root payload %s: %w: pass the root.squashfs and root.verity of the same kiln image build --payloads", root, err)
	}
	return nil
}

// Verify reads the bundle r as an appliance would (signature by one of
// o.Keys, compatible string, generation, every payload's size and hash),
// calling each after every payload checked out, and returns the reader
// holding the manifest and the signing key's id.
func Verify(r io.Reader, o bundle.Options, each func(*bundle.PayloadReader)) (*bundle.Reader, error) {
	br, err := bundle.NewReader(r, o)
	if err != nil {
		return nil, err
	}
	for {
		p, err := br.Next()
		if errors.Is(err, io.EOF) {
			return br, nil
		}
		if err != nil {
			return nil, err
		}
		if _, err := io.Copy(io.Discard, p); err != nil {
			return nil, err
		}
		each(p)
	}
}
