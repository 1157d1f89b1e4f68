package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/services/store"
)

// member is one tar entry of a hand-made payload.
type member struct {
	name, body string
	typ        byte
}

// payload builds an encrypted archive from members; a manifest member
// whose body is "AUTO" is filled with the hashes of the members before it.
func payload(t *testing.T, key Key, members []member) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := key.encrypt(&buf)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(enc)
	tw := tar.NewWriter(gz)
	var files []File
	for _, m := range members {
		body := m.body
		if m.name == manifestName && body == "AUTO" {
			b, _ := json.Marshal(Manifest{Header: goodHeader(), Files: files})
			body = string(b)
		}
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: m.name, Mode: 0o600, Size: int64(len(body)), Typeflag: typ}
		if typ != tar.TypeReg {
			hdr.Size, hdr.Linkname = 0, "/etc/passwd"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
		if typ == tar.TypeReg && m.name != headerName && m.name != manifestName {
			sum := sha256.Sum256([]byte(body))
			files = append(files, File{Name: m.name, Size: int64(len(body)), Mode: 0o600, SHA256: hex.EncodeToString(sum[:])})
		}
	}
	tw.Close()
	gz.Close()
	enc.Close()
	return buf.Bytes()
}

func goodHeader() Header {
	return Header{Format: "kiln-backup", Version: FormatVersion, Kiln: "test", Schema: store.SchemaVersion(), Created: testNow}
}

func headerJSON(h Header) string { return jsonOf(h) }

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// realBackup is a complete backup of a small populated state.
func realBackup(t *testing.T, key Key) []byte {
	t.Helper()
	dir := t.TempDir()
	st := populate(t, dir)
	var buf bytes.Buffer
	if _, err := Create(context.Background(), &buf, Source{StateDir: dir, Store: st, Version: "test", Now: testNow}, key); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func flip(b []byte, at int) []byte {
	out := bytes.Clone(b)
	out[at] ^= 0x40
	return out
}

// otherB64 replaces the base64 character at at with another one.
func otherB64(b []byte, at int) []byte {
	out := bytes.Clone(b)
	if out[at] == 'A' {
		out[at] = 'B'
	} else {
		out[at] = 'A'
	}
	return out
}

// TestRestoreRejects: every bad file fails with a clear error before
// anything of the current state is touched.
func TestRestoreRejects(t *testing.T) {
	key := testKey(t, "correct horse")
	good := realBackup(t, key)
	headerEnd := bytes.Index(good, []byte("\n---")) // the header MAC line
	other, otherPub, err := GenerateKeyFile()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := ParseKeyFile(other)
	if err != nil {
		t.Fatal(err)
	}
	pubOnly, err := ParseKeyFile([]byte(otherPub + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := headerJSON(goodHeader())
	emptyManifest := jsonOf(Manifest{Header: goodHeader()})
	sum := sha256.Sum256([]byte("x"))
	dbOnlyManifest := jsonOf(Manifest{Header: goodHeader(), Files: []File{{Name: "state/kiln.db", Size: 1, SHA256: hex.EncodeToString(sum[:])}}})
	newer := goodHeader()
	newer.Version = FormatVersion + 1
	newerSchema := goodHeader()
	newerSchema.Schema = store.SchemaVersion() + 1

	tests := []struct {
		name     string
		file     []byte
		key      Key
		want     error  // errors.Is target, or nil to check text only
		wantText string // in the message
	}{
		{"wrong passphrase", good, testKey(t, "wrong horse"), ErrWrongKey, "another passphrase or key"},
		{"key file for a passphrase backup", good, otherKey, ErrWrongKey, ""},
		{"public key only", good, pubOnly, ErrWrongKey, "only encrypts"},
		{"truncated by a byte", good[:len(good)-1], key, ErrDamaged, ""},
		{"truncated to half", good[:len(good)/2], key, ErrDamaged, ""},
		{"truncated inside the header", good[:headerEnd/2], key, ErrDamaged, ""},
		{"payload byte changed", flip(good, len(good)-100), key, ErrDamaged, ""},
		{"header MAC changed", otherB64(good, headerEnd+10), key, ErrDamaged, "authentication code"},
		{"empty file", nil, key, ErrNotBackup, ""},
		{"not age", []byte("hostname: kiln\n"), key, ErrNotBackup, "age header"},
		{"armored", []byte("-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n"), key, ErrNotBackup, "ASCII-armored"},
		{"first member not the header", payload(t, key, []member{{name: "state/kiln.db", body: "x"}}), key, ErrNotBackup, "first member"},
		{"format from the future", payload(t, key, []member{{name: headerName, body: headerJSON(newer)}}), key, nil, "newer than this kiln reads"},
		{"schema from the future", payload(t, key, []member{{name: headerName, body: headerJSON(newerSchema)}}), key, store.ErrSchemaNewer, "or newer"},
		{"path escape", payload(t, key, []member{{name: headerName, body: h}, {name: "state/../../etc/x", body: "x"}}), key, ErrNotBackup, "outside state/"},
		{"absolute path", payload(t, key, []member{{name: headerName, body: h}, {name: "/state/x", body: "x"}}), key, ErrNotBackup, "outside state/"},
		{"other top-level member", payload(t, key, []member{{name: headerName, body: h}, {name: "config/other.yaml", body: "x"}}), key, ErrNotBackup, "outside state/"},
		{"symlink", payload(t, key, []member{{name: headerName, body: h}, {name: "state/link", typ: tar.TypeSymlink}}), key, ErrNotBackup, "only files and directories"},
		{"no manifest", payload(t, key, []member{{name: headerName, body: h}, {name: "state/kiln.db", body: "x"}}), key, ErrDamaged, "before its manifest"},
		{"member after the manifest", payload(t, key, []member{{name: headerName, body: h}, {name: manifestName, body: "AUTO"}, {name: "state/x", body: "x"}}), key, ErrNotBackup, "after the manifest"},
		{"member not in the manifest", payload(t, key, []member{{name: headerName, body: h}, {name: "state/kiln.db", body: "x"}, {name: manifestName, body: emptyManifest}}), key, ErrDamaged, "not in the manifest"},
		{"manifest entry not in the archive", payload(t, key, []member{{name: headerName, body: h}, {name: manifestName, body: dbOnlyManifest}}), key, ErrDamaged, "not in the archive"},
		{"member changed", payload(t, key, []member{{name: headerName, body: h}, {name: "state/kiln.db", body: "y"}, {name: manifestName, body: dbOnlyManifest}}), key, ErrDamaged, "does not match"},
		{"manifest header differs", payload(t, key, []member{{name: headerName, body: h}, {name: manifestName, body: `{"format":"kiln-backup","version":1}`}}), key, ErrDamaged, "header differs"},
		{"no database", payload(t, key, []member{{name: headerName, body: h}, {name: "state/secrets.key", body: "k"}, {name: manifestName, body: "AUTO"}}), key, ErrNotBackup, "no database"},
		{"database that does not open", payload(t, key, []member{{name: headerName, body: h}, {name: "state/kiln.db", body: "not sqlite"}, {name: manifestName, body: "AUTO"}}), key, nil, "does not open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "state")
			writeFile(t, filepath.Join(dst, "keep.txt"), "precious", 0o600)
			before := treeOf(t, parent, false)
			_, err := Restore(context.Background(), bytes.NewReader(tt.file), tt.key, Target{StateDir: dst, Now: testNow})
			if err == nil {
				t.Fatal("Restore = nil error, want a refusal")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Restore = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantText) || !strings.Contains(err.Error(), "nothing was changed") {
				t.Errorf("Restore = %q, want it to say %q and that nothing was changed", err, tt.wantText)
			}
			if diff := cmp.Diff(before, treeOf(t, parent, false)); diff != "" {
				t.Errorf("a refused restore changed the files (-before +after):\n%s", diff)
			}
		})
	}
}

// TestKeyFileRoundTrip: a backup made for a public key (what a scheduled
// backup uses) opens with its secret key and nothing else.
func TestKeyFileRoundTrip(t *testing.T) {
	file, pub, err := GenerateKeyFile()
	if err != nil {
		t.Fatal(err)
	}
	public, err := ParseKeyFile([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	secret, err := ParseKeyFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b := realBackup(t, public)
	dst := filepath.Join(t.TempDir(), "state")
	if _, err := Restore(context.Background(), bytes.NewReader(b), secret, Target{StateDir: dst, Now: testNow}); err != nil {
		t.Fatalf("Restore with the secret key: %v", err)
	}
	if _, err := os.Stat(store.Path(dst)); err != nil {
		t.Error(err)
	}
}

func TestParseKeyFileErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "holds no key"},
		{"# only a comment\n", "holds no key"},
		{"ssh-ed25519 AAAA\n", "line 1: want an AGE-SECRET-KEY-1"},
		{"# c\nage1notakey\n", "line 2"},
		{"AGE-SECRET-KEY-1XYZ\n", "line 1"},
	} {
		_, err := ParseKeyFile([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseKeyFile(%q) = %v, want an error saying %q", tt.in, err, tt.want)
		}
	}
	if _, err := Passphrase("", 0); err == nil {
		t.Error("Passphrase(\"\") = nil error, want a refusal")
	}
}
