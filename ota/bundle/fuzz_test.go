package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"testing"
)

func jsonEncoder(w io.Writer) *json.Encoder { return json.NewEncoder(w) }

// FuzzReader feeds arbitrary bytes to the bundle reader: it must never panic,
// and whatever it accepts must be exactly what the signed manifest lists.
func FuzzReader(f *testing.F) {
	good := goodBundle(f, 2)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(rawTar(f, members(f, manifestFor(f, 2, testPayloads), testKey(1))[:2], true))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		o := defaultOptions()
		o.Limits = Limits{Manifest: 4096, Kernel: 1 << 16, Initrd: 1 << 16, Root: 1 << 16}
		got, r, err := readBundle(data, o)
		if err != nil {
			for _, e := range []error{ErrFormat, ErrSignature, ErrUnknownKey, ErrIncompatible, ErrGeneration, ErrTooLarge, ErrCorrupt} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("error %v wraps none of the package's sentinel errors", err)
		}
		// Accepted: it is signed by a trusted key, so with the fixed test
		// key it can only be the seed's content.
		if r.Manifest.Generation < 2 || len(got) != len(PayloadNames) {
			t.Fatalf("accepted manifest %+v with %d payloads", r.Manifest, len(got))
		}
		for _, p := range r.Manifest.Payloads {
			if int64(len(got[p.Name])) != p.Size {
				t.Fatalf("payload %s: read %d bytes, manifest says %d", p.Name, len(got[p.Name]), p.Size)
			}
		}
		if !bytes.Equal(got[RootName], testPayloads[RootName]) {
			t.Fatal("accepted a root payload the signer never signed")
		}
	})
}

// FuzzSignedManifest signs whatever manifest bytes the fuzzer makes, so the
// checks behind the signature (manifest parsing, compatible, generation,
// payload headers, sizes and hashes) are explored too; rest is the tar stream
// after manifest.sig.
func FuzzSignedManifest(f *testing.F) {
	good := manifestFor(f, 2, testPayloads)
	mb, err := good.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	whole := rawTar(f, members(f, good, testKey(1)), true)
	head := rawTar(f, members(f, good, testKey(1))[:2], false)
	f.Add(mb, whole[len(head):])
	f.Add([]byte(`{"format":1}`), []byte{})
	f.Fuzz(func(t *testing.T, manifest, rest []byte) {
		ms := []member{{name: ManifestName, data: manifest}, {name: SignatureName, data: Sign(manifest, testKey(1))}}
		data := append(rawTar(t, ms, false), rest...)
		o := defaultOptions()
		o.Limits = Limits{Manifest: 4096, Kernel: 1 << 16, Initrd: 1 << 16, Root: 1 << 16}
		got, r, err := readBundle(data, o)
		if err != nil {
			for _, e := range []error{ErrFormat, ErrSignature, ErrUnknownKey, ErrIncompatible, ErrGeneration, ErrTooLarge, ErrCorrupt} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("error %v wraps none of the package's sentinel errors", err)
		}
		for _, p := range r.Manifest.Payloads {
			sum := sha256.Sum256(got[p.Name])
			if hex.EncodeToString(sum[:]) != p.SHA256 {
				t.Fatalf("accepted payload %s whose hash differs from the manifest", p.Name)
			}
		}
	})
}
