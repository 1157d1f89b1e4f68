package iscsi

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
)

func TestCheckQuota(t *testing.T) {
	const G = 1 << 30
	space := Space{Total: 100 * G, Free: 80 * G, Reserve: 10 * G}
	for _, c := range []struct {
		name string
		vols []Usage
		add  int64
		ok   bool
	}{
		{"empty disk", nil, 70 * G, true},
		{"one byte over the reserve", nil, 70*G + 1, false},
		{"written blocks are already counted in free", []Usage{{Logical: 40 * G, Allocated: 40 * G}}, 70 * G, true},
		{"unwritten blocks are promised", []Usage{{Logical: 40 * G, Allocated: 10 * G}}, 41 * G, false},
		{"fits beside a sparse volume", []Usage{{Logical: 40 * G, Allocated: 10 * G}}, 40 * G, true},
		{"allocated beyond logical counts nothing", []Usage{{Logical: 1 * G, Allocated: 2 * G}}, 70 * G, true},
	} {
		err := CheckQuota(space, c.vols, c.add)
		if c.ok != (err == nil) || err != nil && !errors.Is(err, ErrQuota) {
			t.Errorf("%s: CheckQuota(+%s) = %v, want ok=%v", c.name, Bytes(c.add), err, c.ok)
		}
	}
}

// TestManagerReserve: provisioning.iscsi.reserve sizes the space the quota
// keeps free.
func TestManagerReserve(t *testing.T) {
	ctx := context.Background()
	m := testManager(t)
	space, err := m.Space()
	if err != nil {
		t.Fatal(err)
	}
	if want := config.DefaultISCSIReserve; space.Reserve != (config.ISCSIService{}).ReserveBytes(space.Total) {
		t.Errorf("default reserve = %s, want %s of %s", Bytes(space.Reserve), want, Bytes(space.Total))
	}
	if space.Free-space.Reserve < 1<<20 {
		t.Skipf("the test directory's filesystem has only %s free", Bytes(space.Free))
	}
	// A reserve as large as the free space leaves no room for a MiB.
	m.Reserve = config.ISCSIService{Reserve: strconv.FormatInt(space.Free, 10)}
	_, err = m.CreateVolume(ctx, "", "golden", 1<<20, Source{})
	if !errors.Is(err, ErrQuota) || !strings.Contains(err.Error(), "provisioning.iscsi.reserve") {
		t.Errorf("CreateVolume under a reserve of all free space = %v, want ErrQuota naming provisioning.iscsi.reserve", err)
	}
	m.Reserve = config.ISCSIService{}
	if _, err := m.CreateVolume(ctx, "", "golden", 1<<20, Source{}); err != nil {
		t.Errorf("CreateVolume under the default reserve = %v, want a volume", err)
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1 << 20: "1 MiB", 3 << 29: "1.5 GiB", 16 << 30: "16 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func testManager(t *testing.T) *Manager {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), store.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sealer, err := OpenSealer(filepath.Join(dir, "iscsi", KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	names, err := NamesFor(context.Background(), st, "hall.example", time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateHost(context.Background(), store.Host{Name: "node1", MACs: []string{"52:54:00:00:01:01"}}); err != nil {
		t.Fatal(err)
	}
	return &Manager{Store: st, Files: Files{Dir: filepath.Join(dir, "iscsi", "volumes")}, Sealer: sealer, Names: names}
}

func TestManagerVolumes(t *testing.T) {
	ctx := context.Background()
	m := testManager(t)
	// A raw image with data at 0 and 3 MiB: the clone keeps the zeros between as holes.
	img := make([]byte, 4<<20)
	copy(img, "boot sector")
	copy(img[3<<20:], "root fs")
	if _, err := m.CreateVolume(ctx, "", "debian", 8<<20, Source{Image: bytes.NewReader(img), ImageName: "debian.raw"}); err != nil {
		t.Fatal(err)
	}
	v, err := m.CreateVolume(ctx, "node1", "boot", 0, Source{Volume: "debian"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Size != 8<<20 || v.Source != "volume:debian" {
		t.Errorf("clone = %+v, want the golden's 8 MiB and source volume:debian", v)
	}
	got, err := os.ReadFile(m.Files.Path("node1", "boot"))
	if err != nil || len(got) != 8<<20 || !bytes.Equal(got[:4<<20], img) {
		t.Fatalf("clone's file = %d bytes, %v; want the image followed by zeros", len(got), err)
	}
	infos, err := m.Volumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range infos {
		if i.Allocated >= i.Size/2 {
			t.Errorf("%s allocates %s of %s: the copy is not sparse", Label(i.Host, i.Name), Bytes(i.Allocated), Bytes(i.Size))
		}
	}
	if infos[1].Target != "iqn.2026-01.example.hall:node1" || infos[0].Target != "" {
		t.Errorf("targets = %q, %q; want none for the golden and node1's for its volume", infos[0].Target, infos[1].Target)
	}
	for _, c := range []struct {
		name string
		err  error
		want error
	}{
		{"smaller than the image", func() error {
			_, err := m.CreateVolume(ctx, "node1", "tiny", 1<<20, Source{Image: bytes.NewReader(img)})
			return err
		}(), store.ErrInvalid},
		{"a petabyte", func() error { _, err := m.CreateVolume(ctx, "node1", "huge", 1<<50, Source{}); return err }(), ErrQuota},
		{"exists", func() error { _, err := m.CreateVolume(ctx, "node1", "boot", 1<<20, Source{}); return err }(), store.ErrConflict},
		{"no such source", func() error { _, err := m.CreateVolume(ctx, "node1", "x", 1<<20, Source{Volume: "nope"}); return err }(), store.ErrNotFound},
		{"shrink", func() error { _, err := m.GrowVolume(ctx, "node1", "boot", 4<<20); return err }(), store.ErrInvalid},
		{"grow past the quota", func() error { _, err := m.GrowVolume(ctx, "node1", "boot", 1<<50); return err }(), ErrQuota},
		{"untyped confirmation", m.DeleteVolume(ctx, "node1", "boot", "yes"), ErrConfirm},
	} {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
	}
	if _, err := os.Stat(m.Files.Path("node1", "tiny")); err == nil {
		t.Errorf("a refused volume left its file behind")
	}
	if v, err := m.GrowVolume(ctx, "node1", "boot", 16<<20); err != nil || v.Size != 16<<20 {
		t.Errorf("GrowVolume = %+v, %v", v, err)
	}
	if fi, err := os.Stat(m.Files.Path("node1", "boot")); err != nil || fi.Size() != 16<<20 {
		t.Errorf("grown file = %v, %v; want 16 MiB", fi, err)
	}
	if err := m.DeleteVolume(ctx, "node1", "boot", "node1/boot"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.Files.Path("node1", "boot")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("deleted volume's file: %v, want it gone", err)
	}
}

func TestManagerInitiator(t *testing.T) {
	ctx := context.Background()
	m := testManager(t)
	c, err := m.SetInitiator(ctx, "node1", "", true)
	if err != nil {
		t.Fatal(err)
	}
	if c.IQN != "iqn.2026-01.example.hall:initiator:node1" || c.Target != "iqn.2026-01.example.hall:node1" || len(c.Secret) != 16 || len(c.MutualSecret) != 16 {
		t.Errorf("SetInitiator = %+v", c)
	}
	rec, err := m.Store.InitiatorOf(ctx, "node1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rec.CHAPSealed, c.Secret) || strings.Contains(rec.MutualSealed, c.MutualSecret) {
		t.Errorf("the database holds a secret in clear text: %+v", rec)
	}
	chap, err := m.Sealer.Unseal(rec)
	if err != nil || chap.Password != c.Secret || chap.MutualPassword != c.MutualSecret {
		t.Errorf("Unseal = %+v, %v; want the secrets shown once", chap, err)
	}
	again, err := m.SetInitiator(ctx, "node1", "", false)
	if err != nil || again.IQN != c.IQN || again.Secret == c.Secret || again.MutualSecret != "" {
		t.Errorf("regenerating = %+v, %v; want the same IQN, a new secret, no mutual", again, err)
	}
	if _, err := m.SetInitiator(ctx, "node1", "iqn.2026-01.Example:x", false); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "iqn") {
		t.Errorf("a bad IQN = %v, want ErrInvalid naming iqn", err)
	}
}
