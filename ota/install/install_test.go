package install

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/image/verity"
	"kiln.dev/kiln/ota/bootentry"
	"kiln.dev/kiln/ota/bundle"
	"kiln.dev/kiln/ota/internal/crashfs"
	"kiln.dev/kiln/ota/oplock"
	"kiln.dev/kiln/ota/slots"
	"kiln.dev/kiln/partitions"
)

const (
	uuidA = "AAAAAAAA-0000-5000-8000-000000000001"
	uuidB = "BBBBBBBB-0000-5000-8000-000000000002"
)

var signer = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))

// release is one generation's payloads.
type release struct {
	gen                  int
	kernel, initrd, root []byte // root: data, then its verity tree
	verity               string
}

var releases = map[[2]int]release{}

func newRelease(gen int, rootSize int) release {
	if r, ok := releases[[2]int{gen, rootSize}]; ok {
		return r
	}
	r := makeRelease(gen, rootSize)
	releases[[2]int{gen, rootSize}] = r
	return r
}

// makeRelease makes a generation whose root payload is about rootSize bytes
// of data (whole verity blocks) followed by their hash tree.
func makeRelease(gen int, rootSize int) release {
	rng := rand.New(rand.NewSource(int64(gen)))
	root := make([]byte, (rootSize+verity.BlockSize-1)/verity.BlockSize*verity.BlockSize)
	rng.Read(root)
	tree, err := verity.Build(bytes.NewReader(root), int64(len(root)), []byte{byte(gen)})
	if err != nil {
		panic(err)
	}
	return release{gen: gen, kernel: fmt.Appendf(nil, "kernel of generation %d", gen),
		initrd: fmt.Appendf(nil, "initrd of generation %d, somewhat longer", gen), root: append(root, tree.Hash...),
		verity: tree.Params().String()}
}

func (r release) payload(name string) []byte {
	switch name {
	case bundle.KernelName:
		return r.kernel
	case bundle.InitrdName:
		return r.initrd
	}
	return r.root
}

func (r release) manifest() bundle.Manifest {
	m := bundle.Manifest{Format: bundle.Format, Compatible: "kiln-x86_64", Version: fmt.Sprintf("v%d", r.gen), Generation: r.gen, RootVerity: r.verity}
	for _, n := range bundle.PayloadNames {
		s := sha256.Sum256(r.payload(n))
		m.Payloads = append(m.Payloads, bundle.Payload{Name: n, Size: int64(len(r.payload(n))), SHA256: hex.EncodeToString(s[:])})
	}
	return m
}

func (r release) bundle(t testing.TB, key ed25519.PrivateKey) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := bundle.Write(&b, r.manifest(), key, func(n string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(r.payload(n))), nil
	}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func (r release) entry(s partitions.Slot, c *bootentry.Counter) bootentry.Entry {
	u := uuidA
	if s == partitions.SlotB {
		u = uuidB
	}
	return bootentry.Entry{Generation: r.gen, Slot: s, Version: fmt.Sprintf("v%d", r.gen), RootUUID: u, Verity: r.verity, Counter: c}
}

// machine is an appliance running slot a (generation 2, committed) whose
// slot b still holds generation 1, committed.
type machine struct {
	esp      *crashfs.ESP
	disk     *crashfs.Disk
	state    *slots.Store
	lock     string
	old, cur release
	partSize int
}

const partSize = 3*chunk + 12345 + 7*verity.BlockSize // a 3 MiB root and its tree fit

func newMachine(t testing.TB, c *crashfs.Crasher) *machine {
	old, cur := newRelease(1, 2*chunk+7), newRelease(2, 2*chunk+99)
	files := map[string][]byte{
		"EFI/BOOT/BOOTX64.EFI": []byte("systemd-boot"),
		"loader/loader.conf":   []byte("timeout 0\n"),
		"kiln/a/vmlinuz":       cur.kernel, "kiln/a/initrd": cur.initrd,
		"kiln/b/vmlinuz": old.kernel, "kiln/b/initrd": old.initrd,
	}
	for _, e := range []bootentry.Entry{cur.entry(partitions.SlotA, nil), old.entry(partitions.SlotB, nil)} {
		files[path.Join(bootentry.Dir, e.FileName())] = bootentry.Render(e)
	}
	disk := make([]byte, partSize)
	copy(disk, old.root)
	dir := t.TempDir()
	return &machine{esp: crashfs.NewESP(files, c), disk: crashfs.NewDisk(disk, c),
		state: &slots.Store{Path: filepath.Join(dir, "state.json")}, lock: filepath.Join(dir, "ota.lock"), old: old, cur: cur}
}

func (m *machine) installer() *Installer {
	return &Installer{
		ESP: m.esp, Running: partitions.SlotA, State: m.state, LockPath: m.lock,
		Keys:       []bundle.PublicKey{{Key: signer.Public().(ed25519.PublicKey)}},
		Compatible: "kiln-x86_64",
		Target: func(s partitions.Slot) (Target, error) {
			if s != partitions.SlotB {
				return Target{}, fmt.Errorf("asked for slot %s", s)
			}
			return Target{RootUUID: uuidB, Open: func() (Device, error) { return m.disk, nil }}, nil
		},
	}
}

func TestInstall(t *testing.T) {
	m := newMachine(t, nil)
	next := newRelease(3, 3*chunk)
	res, err := m.installer().Install(context.Background(), bytes.NewReader(next.bundle(t, signer)), Request{Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Slot != partitions.SlotB || res.Generation != 3 || res.Entry != "kiln-3+3-0.conf" || res.Tries != 3 {
		t.Errorf("Install = %+v", res)
	}
	got, ok := crashfs.Boot(m.esp)
	if !ok || got.FileName() != "kiln-3+2-1.conf" || got.Slot != partitions.SlotB {
		t.Fatalf("after install systemd-boot boots %s, want kiln-3 on slot b (counted)", got.FileName())
	}
	if err := complete(m, got, next); err != nil {
		t.Error(err)
	}
	es, _, _ := slots.Scan(m.esp)
	var names []string
	for _, e := range es {
		names = append(names, e.FileName())
	}
	if diff := cmp.Diff([]string{"kiln-2.conf", "kiln-3+2-1.conf"}, names); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	r, _ := m.state.Load()
	if sr := r.Slot(partitions.SlotB); sr.Phase != slots.PhaseInstalled || sr.Generation != 3 {
		t.Errorf("state of slot b = %+v", sr)
	}
}

// complete reports whether the slot entry e boots holds release r.
func complete(m *machine, e bootentry.Entry, r release) error {
	files := m.esp.Files()
	if !bytes.Equal(files[bootentry.KernelPath(e.Slot)[1:]], r.kernel) || !bytes.Equal(files[bootentry.InitrdPath(e.Slot)[1:]], r.initrd) {
		return fmt.Errorf("entry %s (slot %s): kernel or initrd on the ESP is not generation %d's", e.FileName(), e.Slot, r.gen)
	}
	if e.Slot == partitions.SlotB && !bytes.Equal(m.disk.Bytes()[:len(r.root)], r.root) {
		return fmt.Errorf("entry %s: slot b's root partition is not generation %d's root", e.FileName(), r.gen)
	}
	return nil
}

func TestInstallRefuses(t *testing.T) {
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	tests := []struct {
		name    string
		setup   func(t *testing.T, m *machine) (bundle []byte, req Request)
		want    error
		changed bool // the target slot lost its entry (refused after step 3)
	}{
		{name: "unknown key", want: bundle.ErrUnknownKey, setup: func(t *testing.T, m *machine) ([]byte, Request) {
			return newRelease(3, 100).bundle(t, other), Request{}
		}},
		{name: "tampered manifest", want: bundle.ErrSignature, setup: func(t *testing.T, m *machine) ([]byte, Request) {
			b := newRelease(3, 100).bundle(t, signer)
			return bytes.Replace(b, []byte(`"version": "v3"`), []byte(`"version": "v4"`), 1), Request{}
		}},
		{name: "older generation", want: bundle.ErrGeneration, setup: func(t *testing.T, m *machine) ([]byte, Request) {
			return newRelease(1, 100).bundle(t, signer), Request{}
		}},
		{name: "same generation", want: bundle.ErrGeneration, setup: func(t *testing.T, m *machine) ([]byte, Request) {
			return newRelease(2, 100).bundle(t, signer), Request{}
		}},
		{name: "root larger than the partition", want: bundle.ErrTooLarge, setup: func(t *testing.T, m *machine) ([]byte, Request) {
			return newRelease(3, partSize+1).bundle(t, signer), Request{}
		}},
		{name: "failed before", want: ErrFailedBefore, setup: func(t *testing.T, m *machine) ([]byte, Request) {
			m.state.Update(func(r *slots.Record) error {
				r.AddFailure(slots.Failure{Generation: 3, Version: "v3", Reason: "did not come up"})
				return nil
			})
			return newRelease(3, 100).bundle(t, signer), Request{}
		}},
		{name: "running slot on trial", want: ErrNotCommitted, setup: func(t *testing.T, m *machine) ([]byte, Request) {
			slots.Replace(m.esp, m.cur.entry(partitions.SlotA, nil), m.cur.entry(partitions.SlotA, &bootentry.Counter{Left: 2, Done: 1}))
			return newRelease(3, 100).bundle(t, signer), Request{}
		}},
		{name: "second install while one runs", want: oplock.ErrBusy, setup: func(t *testing.T, m *machine) ([]byte, Request) {
			l, err := oplock.Acquire(m.lock, "install of v9")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l.Release)
			return newRelease(3, 100).bundle(t, signer), Request{}
		}},
		{name: "tries out of range", want: nil, setup: func(t *testing.T, m *machine) ([]byte, Request) {
			return newRelease(3, 100).bundle(t, signer), Request{Tries: 10}
		}},
		{name: "corrupt root payload", want: bundle.ErrCorrupt, changed: true, setup: func(t *testing.T, m *machine) ([]byte, Request) {
			b := newRelease(3, 2*chunk).bundle(t, signer)
			b[len(b)-1024-chunk] ^= 0xff // inside the root payload
			return b, Request{}
		}},
		{name: "truncated bundle", want: bundle.ErrCorrupt, changed: true, setup: func(t *testing.T, m *machine) ([]byte, Request) {
			b := newRelease(3, 2*chunk).bundle(t, signer)
			return b[:len(b)-1024-chunk], Request{}
		}},
		{name: "no root_verity", want: ErrUnverified, setup: func(t *testing.T, m *machine) ([]byte, Request) {
			r := newRelease(3, 100)
			r.verity = ""
			return r.bundle(t, signer), Request{}
		}},
		{name: "root_verity not the payload's tree", want: ErrVerify, changed: true, setup: func(t *testing.T, m *machine) ([]byte, Request) {
			r, o := newRelease(3, 1000), newRelease(4, 1000) // same sizes, other hashes
			r.verity = o.verity
			return r.bundle(t, signer), Request{}
		}},
		{name: "trailing member", want: bundle.ErrFormat, changed: true, setup: func(t *testing.T, m *machine) ([]byte, Request) {
			b := newRelease(3, 1000).bundle(t, signer)
			return append(b[:len(b)-1024], tarMember("extra.sh", []byte("#!/bin/sh\n"))...), Request{}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMachine(t, nil)
			data, req := tt.setup(t, m)
			espBefore, diskBefore := m.esp.Files(), m.disk.Bytes()
			_, err := m.installer().Install(context.Background(), bytes.NewReader(data), req)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Install = %v, want %v", err, tt.want)
			}
			// The running slot is untouched in every case.
			got, ok := crashfs.Boot(m.esp)
			if !ok || got.Slot != partitions.SlotA || complete(m, got, m.cur) != nil {
				t.Errorf("after a refused install systemd-boot boots %s", got.FileName())
			}
			if tt.changed {
				if _, ok := slots.OfSlot(crashfs.Entries(m.esp), partitions.SlotB); ok {
					t.Error("slot b still has an entry after a failed install overwrote it")
				}
				st, _ := m.state.Load()
				if sr := st.Slot(partitions.SlotB); sr.Phase != slots.PhaseInstalling || !strings.Contains(sr.LastBoot, "install failed") {
					t.Errorf("state of slot b after a failed install = %+v", sr)
				}
				return
			}
			if diff := cmp.Diff(espBefore, m.esp.Files()); diff != "" && tt.name != "running slot on trial" {
				t.Errorf("a refused install changed the ESP (-before +after):\n%s", diff)
			}
			if !bytes.Equal(diskBefore, m.disk.Bytes()) {
				t.Error("a refused install changed the target partition")
			}
		})
	}
}

func tarMember(name string, data []byte) []byte {
	var b bytes.Buffer
	tw := tarWriter(&b)
	tw(name, data)
	return b.Bytes()
}

// TestRetryFailed installs a failed generation when asked explicitly.
func TestRetryFailed(t *testing.T) {
	m := newMachine(t, nil)
	m.state.Update(func(r *slots.Record) error {
		r.AddFailure(slots.Failure{Generation: 3, Reason: "health"})
		return nil
	})
	if _, err := m.installer().Install(context.Background(), bytes.NewReader(newRelease(3, 100).bundle(t, signer)), Request{RetryFailed: true, Tries: 1}); err != nil {
		t.Fatalf("Install with RetryFailed = %v", err)
	}
	if _, ok := slots.OfSlot(crashfs.Entries(m.esp), partitions.SlotB); !ok {
		t.Error("no entry for slot b")
	}
}

// TestCrashConsistency cuts the power at every step of an install, keeps a
// random subset of what was not durable yet (crashfs), and checks with the
// systemd-boot model that every entry that can boot boots a complete slot,
// and that one does.
func TestCrashConsistency(t *testing.T) {
	next := newRelease(3, 3*chunk)
	data := next.bundle(t, signer)
	gens := map[int]release{}
	probe := newMachine(t, crashfs.NewCrasher(-1))
	gens[1], gens[2], gens[3] = probe.old, probe.cur, next
	total := crashfs.NewCrasher(-1)
	pm := newMachine(t, total)
	if _, err := pm.installer().Install(context.Background(), bytes.NewReader(data), Request{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("an install is %d write operations; crashing at each with 16 outcomes", total.Ops)
	sawNew, sawOld := 0, 0
	for at := 0; at <= total.Ops; at++ {
		for seed := int64(0); seed < 16; seed++ {
			c := crashfs.NewCrasher(at)
			m := newMachine(t, c)
			_, err := m.installer().Install(context.Background(), bytes.NewReader(data), Request{})
			if at < total.Ops && !errors.Is(err, crashfs.ErrCrashed) {
				t.Fatalf("crash at op %d: Install = %v, want ErrCrashed", at, err)
			}
			rng := rand.New(rand.NewSource(seed))
			after := &machine{esp: m.esp.AfterCrash(rng), disk: m.disk.AfterCrash(rng)}
			for _, e := range crashfs.Entries(after.esp) {
				if e.Bad() {
					continue
				}
				if err := complete(after, e, gens[e.Generation]); err != nil {
					t.Fatalf("crash at op %d, seed %d: bootable entry is not complete: %v\nESP: %s", at, seed, err, after.esp)
				}
			}
			got, ok := crashfs.Boot(after.esp)
			if !ok {
				t.Fatalf("crash at op %d, seed %d: no entry boots; ESP: %s", at, seed, after.esp)
			}
			if got.Generation == 3 {
				sawNew++
			} else {
				sawOld++
			}
		}
	}
	if sawNew == 0 || sawOld == 0 {
		t.Errorf("crash outcomes booted the new generation %d times and the old %d times; want both to occur", sawNew, sawOld)
	}
}
