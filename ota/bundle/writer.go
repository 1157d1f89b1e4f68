package bundle

import (
	"archive/tar"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Files names the payload files a bundle is built from.
type Files struct {
	Kernel, Initrd, Root string
	// RootVerity is the kiln.verity value of Root (squashfs, then its hash
	// tree, as kiln image build --payloads writes it); the signed manifest
	// carries it to the boot entry.
	RootVerity string
}

func (f Files) path(name string) string {
	switch name {
	case KernelName:
		return f.Kernel
	case InitrdName:
		return f.Initrd
	}
	return f.Root
}

// NewManifest hashes the payload files into a manifest.
func NewManifest(compatible, version string, generation int, f Files) (Manifest, error) {
	m := Manifest{Format: Format, Compatible: compatible, Version: version, Generation: generation, RootVerity: f.RootVerity}
	for _, name := range PayloadNames {
		p := f.path(name)
		fh, err := os.Open(p)
		if err != nil {
			return Manifest{}, fmt.Errorf("payload %s: %w", name, err)
		}
		h := sha256.New()
		n, err := io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return Manifest{}, fmt.Errorf("hashing payload %s (%s): %w", name, p, err)
		}
		m.Payloads = append(m.Payloads, Payload{Name: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
	}
	if err := m.Validate(Limits{}); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// WriteFiles writes a bundle of m's payloads from f, signed with priv.
func WriteFiles(w io.Writer, m Manifest, priv ed25519.PrivateKey, f Files) error {
	return Write(w, m, priv, func(name string) (io.ReadCloser, error) { return os.Open(f.path(name)) })
}

// Write writes a bundle: the manifest, its signature by priv, then each
// payload opened by open. A payload whose bytes differ from the manifest
// (it changed after hashing) fails the write.
func Write(w io.Writer, m Manifest, priv ed25519.PrivateKey, open func(name string) (io.ReadCloser, error)) error {
	mb, err := m.Marshal()
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	add := func(name string, size int64) error {
		return tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644,
			ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR,
		})
	}
	for _, mem := range []struct {
		name string
		data []byte
	}{{ManifestName, mb}, {SignatureName, Sign(mb, priv)}} {
		if err := add(mem.name, int64(len(mem.data))); err != nil {
			return fmt.Errorf("writing %s: %w", mem.name, err)
		}
		if _, err := tw.Write(mem.data); err != nil {
			return fmt.Errorf("writing %s: %w", mem.name, err)
		}
	}
	for _, p := range m.Payloads {
		if err := add(p.Name, p.Size); err != nil {
			return fmt.Errorf("writing %s: %w", p.Name, err)
		}
		rc, err := open(p.Name)
		if err != nil {
			return fmt.Errorf("opening payload %s: %w", p.Name, err)
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(tw, h), io.LimitReader(rc, p.Size+1))
		rc.Close()
		if err != nil && !errors.Is(err, tar.ErrWriteTooLong) {
			return fmt.Errorf("writing payload %s: %w", p.Name, err)
		}
		if n != p.Size || hex.EncodeToString(h.Sum(nil)) != p.SHA256 {
			return fmt.Errorf("payload %s changed after it was hashed; build the bundle again", p.Name)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finishing the bundle: %w", err)
	}
	return nil
}
