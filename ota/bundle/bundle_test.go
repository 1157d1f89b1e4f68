package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/image/verity"
)

// testKey is a fixed key, so fuzz seeds and golden bytes stay stable.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func trusted(keys ...ed25519.PrivateKey) []PublicKey {
	var out []PublicKey
	for _, k := range keys {
		out = append(out, PublicKey{Key: k.Public().(ed25519.PublicKey), Source: "test"})
	}
	return out
}

var testPayloads = map[string][]byte{
	KernelName: []byte("kernel bytes"),
	InitrdName: []byte("initrd bytes, a few more"),
	RootName:   bytes.Repeat([]byte("root"), 3000),
}

func manifestFor(t testing.TB, gen int, payloads map[string][]byte) Manifest {
	t.Helper()
	m := Manifest{Format: Format, Compatible: "kiln-x86_64", Version: "2.0", Generation: gen}
	for _, n := range PayloadNames {
		sum := sha256.Sum256(payloads[n])
		m.Payloads = append(m.Payloads, Payload{Name: n, Size: int64(len(payloads[n])), SHA256: hex.EncodeToString(sum[:])})
	}
	return m
}

func goodBundle(t testing.TB, gen int) []byte {
	t.Helper()
	var b bytes.Buffer
	err := Write(&b, manifestFor(t, gen, testPayloads), testKey(1), func(n string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(testPayloads[n])), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// readBundle reads a whole bundle and returns its payloads.
func readBundle(data []byte, o Options) (map[string][]byte, *Reader, error) {
	r, err := NewReader(bytes.NewReader(data), o)
	if err != nil {
		return nil, nil, err
	}
	got := map[string][]byte{}
	for {
		p, err := r.Next()
		if errors.Is(err, io.EOF) {
			return got, r, nil
		}
		if err != nil {
			return got, r, err
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return got, r, err
		}
		got[p.Name] = b
	}
}

func defaultOptions() Options {
	return Options{Keys: trusted(testKey(9), testKey(1)), Compatible: "kiln-x86_64", MinGeneration: 2}
}

func TestRoundTrip(t *testing.T) {
	data := goodBundle(t, 2)
	got, r, err := readBundle(data, defaultOptions())
	if err != nil {
		t.Fatalf("reading a good bundle: %v", err)
	}
	if diff := cmp.Diff(testPayloads, got); diff != "" {
		t.Errorf("payloads differ (-want +got):\n%s", diff)
	}
	if r.Manifest.Generation != 2 || r.KeyID != KeyID(testKey(1).Public().(ed25519.PublicKey)) {
		t.Errorf("manifest generation %d key %s", r.Manifest.Generation, r.KeyID)
	}
	if again := goodBundle(t, 2); !bytes.Equal(data, again) {
		t.Error("Write is not deterministic: two writes of the same bundle differ")
	}
}

// member is one tar member of a hand-made bundle.
type member struct {
	name string
	typ  byte
	data []byte
	size int64 // header size if not len(data)
	link string
}

func rawTar(t testing.TB, ms []member, trailer bool) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range ms {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		size := int64(len(m.data))
		if m.size != 0 {
			size = m.size
		}
		if typ != tar.TypeReg {
			size = 0
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: typ, Name: m.name, Size: size, Mode: 0o644, Linkname: m.link}); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write(m.data)
		}
	}
	if trailer {
		tw.Close()
	} else {
		tw.Flush()
	}
	return b.Bytes()
}

// members returns the members of a good bundle, which cases then alter.
func members(t testing.TB, m Manifest, key ed25519.PrivateKey) []member {
	t.Helper()
	mb, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return []member{
		{name: ManifestName, data: mb},
		{name: SignatureName, data: Sign(mb, key)},
		{name: KernelName, data: testPayloads[KernelName]},
		{name: InitrdName, data: testPayloads[InitrdName]},
		{name: RootName, data: testPayloads[RootName]},
	}
}

func TestReaderRefuses(t *testing.T) {
	good := manifestFor(t, 2, testPayloads)
	key := testKey(1)
	for _, tc := range []struct {
		name    string
		build   func() []byte
		opts    func(*Options)
		want    error
		wantMsg string
	}{
		{name: "good", build: func() []byte { return rawTar(t, members(t, good, key), true) }},
		{name: "unknown key", build: func() []byte { return rawTar(t, members(t, good, testKey(7)), true) }, want: ErrUnknownKey, wantMsg: "trusts"},
		{name: "no keys", build: func() []byte { return rawTar(t, members(t, good, key), true) }, opts: func(o *Options) { o.Keys = nil }, want: ErrNoKeys},
		{name: "manifest altered after signing", want: ErrSignature, build: func() []byte {
			ms := members(t, good, key)
			ms[0].data = bytes.Replace(ms[0].data, []byte(`"version": "2.0"`), []byte(`"version": "2.1"`), 1)
			return rawTar(t, ms, true)
		}},
		{name: "signature garbage", want: ErrFormat, build: func() []byte {
			ms := members(t, good, key)
			ms[1].data = []byte("hello\n")
			return rawTar(t, ms, true)
		}},
		{name: "wrong compatible", want: ErrIncompatible, wantMsg: `"kiln-arm"`, build: func() []byte {
			m := good
			m.Compatible = "kiln-arm"
			return rawTar(t, members(t, m, key), true)
		}},
		{name: "older generation", want: ErrGeneration, build: func() []byte { return rawTar(t, members(t, manifestFor(t, 1, testPayloads), key), true) }},
		{name: "equal generation", want: ErrGeneration, opts: func(o *Options) { o.MinGeneration = 3 }, build: func() []byte { return rawTar(t, members(t, good, key), true) }},
		{name: "check hook", want: errVetoed, opts: func(o *Options) { o.Check = func(Manifest) error { return errVetoed } }, build: func() []byte { return rawTar(t, members(t, good, key), true) }},
		{name: "signature before manifest", want: ErrFormat, wantMsg: "out of order", build: func() []byte {
			ms := members(t, good, key)
			ms[0], ms[1] = ms[1], ms[0]
			return rawTar(t, ms, true)
		}},
		{name: "initrd before kernel", want: ErrFormat, wantMsg: "out of order", build: func() []byte {
			ms := members(t, good, key)
			ms[2], ms[3] = ms[3], ms[2]
			return rawTar(t, ms, true)
		}},
		{name: "unknown member", want: ErrFormat, wantMsg: "unknown member", build: func() []byte {
			ms := members(t, good, key)
			ms = append(ms[:2], append([]member{{name: "README", data: []byte("hi")}}, ms[2:]...)...)
			return rawTar(t, ms, true)
		}},
		{name: "repeated kernel", want: ErrFormat, wantMsg: "out of order", build: func() []byte {
			ms := members(t, good, key)
			ms = append(ms[:3], append([]member{ms[2]}, ms[3:]...)...)
			return rawTar(t, ms, true)
		}},
		{name: "trailing member", want: ErrFormat, wantMsg: "after root.squashfs", build: func() []byte {
			ms := append(members(t, good, key), member{name: "extra", data: []byte("x")})
			return rawTar(t, ms, true)
		}},
		{name: "dot-slash path", want: ErrFormat, wantMsg: "plain names", build: func() []byte {
			ms := members(t, good, key)
			ms[0].name = "./manifest.json"
			return rawTar(t, ms, true)
		}},
		{name: "dot-dot path", want: ErrFormat, wantMsg: "plain names", build: func() []byte {
			ms := members(t, good, key)
			ms[2].name = "../../boot/efi/kiln/a/vmlinuz"
			return rawTar(t, ms, true)
		}},
		{name: "absolute path", want: ErrFormat, wantMsg: "plain names", build: func() []byte {
			ms := members(t, good, key)
			ms[4].name = "/dev/vda2"
			return rawTar(t, ms, true)
		}},
		{name: "symlink payload", want: ErrFormat, wantMsg: "regular file", build: func() []byte {
			ms := members(t, good, key)
			ms[2] = member{name: KernelName, typ: tar.TypeSymlink, link: "/etc/shadow"}
			return rawTar(t, ms, true)
		}},
		{name: "directory member", want: ErrFormat, wantMsg: "regular file", build: func() []byte {
			ms := members(t, good, key)
			ms[3] = member{name: InitrdName, typ: tar.TypeDir}
			return rawTar(t, ms, true)
		}},
		{name: "oversize root in manifest", want: ErrTooLarge, opts: func(o *Options) { o.Limits.Root = 100 }, build: func() []byte { return rawTar(t, members(t, good, key), true) }},
		{name: "oversize manifest member", want: ErrTooLarge, opts: func(o *Options) { o.Limits.Manifest = 10 }, build: func() []byte { return rawTar(t, members(t, good, key), true) }},
		{name: "header size differs from manifest", want: ErrCorrupt, wantMsg: "the manifest says", build: func() []byte {
			ms := members(t, good, key)
			ms[3].data = append(ms[3].data, 'x')
			return rawTar(t, ms, true)
		}},
		{name: "corrupt payload", want: ErrCorrupt, wantMsg: "SHA-256", build: func() []byte {
			ms := members(t, good, key)
			ms[4].data = bytes.Clone(ms[4].data)
			ms[4].data[100] ^= 1
			return rawTar(t, ms, true)
		}},
		{name: "truncated in root", want: ErrCorrupt, build: func() []byte {
			b := rawTar(t, members(t, good, key), true)
			return b[:len(b)-1024-5000]
		}},
		{name: "truncated before root", want: ErrCorrupt, build: func() []byte {
			ms := members(t, good, key)
			return rawTar(t, ms[:4], false)
		}},
		{name: "missing end of archive", want: nil, build: func() []byte {
			// A tar without its two zero blocks ends cleanly at EOF: the
			// payloads are complete and verified, so it is accepted.
			return rawTar(t, members(t, good, key), false)
		}},
		{name: "unknown manifest field", want: ErrFormat, wantMsg: "unknown field", build: func() []byte {
			ms := members(t, good, key)
			ms[0].data = bytes.Replace(ms[0].data, []byte(`"format": 1,`), []byte(`"format": 1, "postinstall": "rm -rf /",`), 1)
			ms[1].data = Sign(ms[0].data, key)
			return rawTar(t, ms, true)
		}},
		{name: "payload list reordered in manifest", want: ErrFormat, build: func() []byte {
			m := good
			m.Payloads = []Payload{good.Payloads[1], good.Payloads[0], good.Payloads[2]}
			mb, _ := marshalUnchecked(m)
			ms := members(t, good, key)
			ms[0].data, ms[1].data = mb, Sign(mb, key)
			return rawTar(t, ms, true)
		}},
		{name: "not a tar", want: ErrCorrupt, build: func() []byte { return []byte("hello") }},
		{name: "empty", want: ErrCorrupt, build: func() []byte { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := defaultOptions()
			if tc.opts != nil {
				tc.opts(&o)
			}
			got, _, err := readBundle(tc.build(), o)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("readBundle = %v, want success", err)
				}
				if diff := cmp.Diff(testPayloads, got); diff != "" {
					t.Errorf("payloads (-want +got):\n%s", diff)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("readBundle = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("readBundle = %q, want it to mention %q", err, tc.wantMsg)
			}
		})
	}
}

var errVetoed = errors.New("vetoed")

// marshalUnchecked bypasses Manifest.Marshal's validation to make bad manifests.
func marshalUnchecked(m Manifest) ([]byte, error) {
	var b bytes.Buffer
	enc := jsonEncoder(&b)
	err := enc.Encode(m)
	return b.Bytes(), err
}

func TestRefusedBeforePayloads(t *testing.T) {
	// A refused manifest must not consume payload bytes: the installer relies
	// on deciding before it writes anything.
	data := goodBundle(t, 2)
	cr := &countingReader{r: bytes.NewReader(data)}
	o := defaultOptions()
	o.MinGeneration = 5
	if _, err := NewReader(cr, o); !errors.Is(err, ErrGeneration) {
		t.Fatalf("NewReader = %v, want ErrGeneration", err)
	}
	if cr.n > 4096 {
		t.Errorf("NewReader read %d bytes before refusing, want only the manifest and signature", cr.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestKeysFiles(t *testing.T) {
	dir := t.TempDir()
	for i, seed := range []byte{3, 4} {
		k := testKey(seed)
		pub, err := MarshalPublicKey(k.Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, []string{"old.pub", "new.pub"}[i]), pub, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "README"), []byte("not a key"), 0o644)
	keys, err := ReadKeyDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("ReadKeyDir = %d keys, want 2", len(keys))
	}
	// Both keys of a rotation verify.
	mb := []byte("manifest")
	for _, seed := range []byte{3, 4} {
		if _, err := Verify(mb, Sign(mb, testKey(seed)), keys); err != nil {
			t.Errorf("Verify with rotated key %d: %v", seed, err)
		}
	}
	if _, err := ReadKeyDir(t.TempDir()); !errors.Is(err, ErrNoKeys) {
		t.Errorf("ReadKeyDir(empty) = %v, want ErrNoKeys", err)
	}

	priv := testKey(5)
	pem, err := MarshalPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "k.key")
	os.WriteFile(p, pem, 0o644)
	if _, err := ReadPrivateKeyFile(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("ReadPrivateKeyFile(mode 0644) = %v, want a refusal naming chmod 600", err)
	}
	os.Chmod(p, 0o600)
	got, err := ReadPrivateKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(priv) {
		t.Error("private key did not round-trip")
	}
}

func TestNewManifestFromFiles(t *testing.T) {
	dir := t.TempDir()
	f := Files{Kernel: filepath.Join(dir, "k"), Initrd: filepath.Join(dir, "i"), Root: filepath.Join(dir, "r")}
	for n, p := range map[string]string{KernelName: f.Kernel, InitrdName: f.Initrd, RootName: f.Root} {
		os.WriteFile(p, testPayloads[n], 0o644)
	}
	m, err := NewManifest("kiln-x86_64", "2.0", 2, f)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(manifestFor(t, 2, testPayloads), m); diff != "" {
		t.Errorf("NewManifest (-want +got):\n%s", diff)
	}
	var b bytes.Buffer
	if err := WriteFiles(&b, m, testKey(1), f); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), goodBundle(t, 2)) {
		t.Error("WriteFiles and Write produce different bundles from the same payloads")
	}
	os.WriteFile(f.Initrd, []byte("changed"), 0o644)
	if err := WriteFiles(io.Discard, m, testKey(1), f); err == nil || !strings.Contains(err.Error(), "changed after") {
		t.Errorf("WriteFiles after a payload changed = %v, want a refusal", err)
	}
}

func TestManifestRootVerity(t *testing.T) {
	m := manifestFor(t, 2, testPayloads)
	m.Payloads[2].Size = verity.Params{DataBlocks: 3}.Size() // 3 data blocks + 1 hash block
	hash := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		value, wantErr string
	}{
		{"", ""},
		{hash + ":3:-", ""},
		{hash + ":4:-", "4 data blocks and their hash tree take 20480 bytes, but the root.squashfs payload has 16384"},
		{"nonsense", "root_verity: kiln.verity=\"nonsense\""},
	} {
		m.RootVerity = tt.value
		_, err := m.Marshal()
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Marshal(root_verity %q) = %v, want error %q", tt.value, err, tt.wantErr)
		}
	}
}
