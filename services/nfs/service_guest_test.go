package nfs

// Tier 3g, in TestGuestExports's guest: the nfs service (Run) serving what
// the machine database says, across a promote and a restart.

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
)

// runService starts Run and waits until it is ready; stop ends it.
func runService(t *testing.T, env svc.Env) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	env.Ready = func() {
		select {
		case <-ready:
		default:
			close(ready)
		}
	}
	go func() { done <- Run(ctx, env) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Run ended before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("Run not ready within 30 s")
	}
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func checkService(t *testing.T, mnt string) {
	ctx := context.Background()
	state := t.TempDir()
	lay := LayoutOf(state)
	if err := lay.Prepare(); err != nil {
		t.Fatal(err)
	}
	// The service leaves homes mounted (a restart keeps them); take the
	// test's down before its directory is removed, once nfsd's export
	// cache lets go of it.
	t.Cleanup(func() {
		DefaultKernel(lay.State).Flush()
		if err := syscall.Unmount(lay.HomeDir("lab"), syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting the home: %v", err)
		}
	})
	for v, text := range map[int]string{1: "VERSION=1\n", 2: "VERSION=2\n"} {
		dir := lay.RootDir("contest", v)
		mustMkdir(t, filepath.Join(dir, "etc"))
		writeFile(t, filepath.Join(dir, "etc", "os-release"), text)
		writeFile(t, filepath.Join(dir, "etc", "hostname"), "contest\n")
	}
	st, err := store.Open(ctx, store.Path(state))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, ri := range []store.RootImage{{Name: "contest", Version: 1, Promoted: true}, {Name: "contest", Version: 2}} {
		if _, err := st.AddRootImage(ctx, ri); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []store.Host{
		{Name: "pc-01", MACs: []string{"52:54:00:77:00:02"}, IPv4: netip.MustParseAddr("10.77.0.2"), Role: "contestant"},
		{Name: "far", MACs: []string{"52:54:00:78:00:02"}, IPv4: netip.MustParseAddr("10.78.0.2"), Role: "contestant"},
	} {
		if _, err := st.CreateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.Provisioning.Subnets = []config.Subnet{{Name: "hall", CIDR: "10.77.0.0/24", Mode: config.ModeAuthoritative}}
	cfg.Provisioning.NFS = config.NFSService{Threads: 4, Roles: map[string]config.NFSRole{"contestant": {RootImage: "contest", Home: "lab"}},
		Homes: []config.NFSHome{{Name: "lab", Size: "32M"}}}
	env := svc.Env{Config: cfg, StateDir: state, RunDir: t.TempDir(),
		Logger: testlog.New(t, slog.LevelDebug).With("component", "nfs")}
	stop := runService(t, env)

	root, home := filepath.Join(mnt, "svc-root"), filepath.Join(mnt, "svc-home")
	mustMkdir(t, root)
	mustMkdir(t, home)
	mount(t, nsClient, "10.77.0.1:/roots/contest/1", root)
	if got := readFile(t, filepath.Join(root, "etc", "os-release")); got != "VERSION=1\n" {
		t.Errorf("the promoted version's os-release = %q", got)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "x"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("writing to the root image = %v, want EROFS", err)
	}
	mount(t, nsClient, "10.77.0.1:/homes/lab", home)
	writeFile(t, filepath.Join(home, "notes"), "kept\n")
	if got := readFile(t, filepath.Join(lay.HomeDir("lab"), "notes")); got != "kept\n" {
		t.Errorf("the note in the home's file system on the server = %q", got)
	}
	// The size limit: a 48 MiB file does not fit in the 32 MiB home.
	if err := fill(filepath.Join(home, "big"), 48<<20); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("writing 48 MiB into a 32 MiB home = %v, want ENOSPC", err)
	}
	os.Remove(filepath.Join(home, "big"))
	if out, err := mountCmd(nsOutside, "10.78.0.1:/roots/contest/1", t.TempDir()); err == nil {
		t.Errorf("a host outside the provisioning subnets mounted its role's root image: %s", out)
	}

	// Promote while pc-01 runs version 1: it keeps reading it, version 2
	// is what it boots next, and version 1 is in use.
	if _, err := st.PromoteRootImage(ctx, "contest", 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the use of version 1 to be recorded", func() bool {
		uses, err := st.NFSUses(ctx)
		return err == nil && len(uses) > 0 && containsUse(uses, "pc-01", "/roots/contest/1")
	})
	if got := readFile(t, filepath.Join(root, "etc", "hostname")); got != "contest\n" {
		t.Errorf("after the promote, version 1's hostname = %q", got)
	}
	if err := st.DeleteRootImage(ctx, "contest", 1, InUse, false); !errors.Is(err, store.ErrConflict) {
		t.Errorf("DeleteRootImage(version in use) = %v, want ErrConflict", err)
	}
	v2 := filepath.Join(mnt, "svc-v2")
	mustMkdir(t, v2)
	mount(t, nsClient, "10.77.0.1:/roots/contest/2", v2)
	if got := readFile(t, filepath.Join(v2, "etc", "os-release")); got != "VERSION=2\n" {
		t.Errorf("the new version's os-release = %q", got)
	}
	umount(t, v2)

	// A restart of the service: clients keep working.
	stop()
	runService(t, env)
	if got := readFile(t, filepath.Join(root, "etc", "os-release")); got != "VERSION=1\n" {
		t.Errorf("after a restart, os-release = %q", got)
	}
	if got := readFile(t, filepath.Join(home, "notes")); got != "kept\n" {
		t.Errorf("after a restart, the home's file = %q", got)
	}
	writeFile(t, filepath.Join(home, "after"), "still writable\n")
	if n := strings.Count(readFile(t, "/proc/self/mountinfo"), " "+lay.HomeDir("lab")+" "); n != 1 {
		t.Errorf("after a restart the home is mounted %d times, want once", n)
	}
	umount(t, home)
	umount(t, root)
}

// fill writes n bytes to p and syncs them, returning the first error.
func fill(p string, n int) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i := 0; i < n && err == nil; i += len(buf) {
		_, err = f.Write(buf)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func containsUse(uses []store.NFSUse, host, export string) bool {
	for _, u := range uses {
		if u.Host == host && u.Export == export {
			return true
		}
	}
	return false
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
