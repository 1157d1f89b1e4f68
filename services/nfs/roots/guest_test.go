package roots

// Tier 3g: imports into the appliance's layout while a real NFS client in a
// namespace reads the promoted version through the nfs service, inside a
// QEMU guest with kiln's kernel (the host's has no modules).

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kiln.dev/kiln/qemu/guest"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/nfs"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
)

const nsClient = "kilnroots-c" // unique to this package

func TestGuestImportWhileReading(t *testing.T) {
	if !guest.Enter(t, guest.Options{Modules: []string{"nfsd", "nfsv4", "veth", "loop", "squashfs"}}) {
		return
	}
	for _, tool := range []string{"ip", "nsenter", "mount.nfs4", "mksquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed on the host (apt-get install iproute2 util-linux nfs-common squashfs-tools)", tool)
		}
	}
	ctx := context.Background()
	state := t.TempDir() // tmpfs: nfsd cannot export the guest's overlay root
	st, err := store.Open(ctx, store.Path(state))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := &Manager{Store: st, Layout: nfs.LayoutOf(state)}
	tree := func(version string) string {
		d := filepath.Join(t.TempDir(), "root")
		for _, p := range []string{"etc", "sbin"} {
			if err := os.MkdirAll(filepath.Join(d, p), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		os.WriteFile(filepath.Join(d, "etc", "os-release"), []byte("VERSION="+version+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "sbin", "init"), []byte("#!/bin/sh\nexec /bin/sh\n"), 0o755)
		return d
	}

	// Version 1 from a squashfs image, promoted.
	sq := filepath.Join(t.TempDir(), "contest.squashfs")
	if out, err := exec.Command("mksquashfs", tree("1"), sq, "-all-root", "-noappend", "-quiet").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v: %s", err, out)
	}
	f, err := os.Open(sq)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := m.Import(ctx, "contest", f, "contest.squashfs", true)
	f.Close()
	if err != nil || v1.Version != 1 || !v1.Promoted {
		dmesg, _ := exec.Command("dmesg").CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(dmesg)), "\n")
		t.Fatalf("Import(squashfs) = %+v, %v\nkernel log:\n%s", v1, err, strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
	if mounts, _ := os.ReadFile("/proc/self/mounts"); bytes.Contains(mounts, []byte(m.Layout.Staging)) {
		t.Errorf("the squashfs image is still mounted after the import:\n%s", mounts)
	}

	if _, err := st.CreateHost(ctx, store.Host{Name: "pc-01", MACs: []string{"52:54:00:79:00:02"}, IPv4: netip.MustParseAddr("10.79.0.2"), RootImage: "contest"}); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "add", nsClient)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", nsClient).Run() })
	run(t, "ip", "link", "add", "kilnroots-s", "type", "veth", "peer", "name", "eth0", "netns", nsClient)
	run(t, "ip", "addr", "add", "10.79.0.1/24", "dev", "kilnroots-s")
	run(t, "ip", "link", "set", "kilnroots-s", "up")
	run(t, "ip", "-n", nsClient, "addr", "add", "10.79.0.2/24", "dev", "eth0")
	run(t, "ip", "-n", nsClient, "link", "set", "eth0", "up")

	cfg := config.Default()
	cfg.Provisioning.Subnets = []config.Subnet{{Name: "hall", CIDR: "10.79.0.0/24", Mode: config.ModeAuthoritative}}
	cfg.Provisioning.NFS.Threads = 4
	sctx, stop := context.WithCancel(ctx)
	ready, done := make(chan struct{}), make(chan error, 1)
	var once sync.Once
	env := svc.Env{Config: cfg, StateDir: state, RunDir: t.TempDir(), Ready: func() { once.Do(func() { close(ready) }) },
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)).With("component", "nfs")}
	go func() { done <- nfs.Run(sctx, env) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run ended before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the nfs service was not ready within 30 s")
	}

	mnt := t.TempDir()
	m1, m2 := filepath.Join(mnt, "v1"), filepath.Join(mnt, "v2")
	os.Mkdir(m1, 0o755)
	os.Mkdir(m2, 0o755)
	mount(t, "10.79.0.1:/roots/contest/1", m1)
	defer umount(t, m1)

	// A reader on version 1 while version 2 is imported and promoted.
	var reads int
	var readErr error
	quit := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-quit:
				return
			default:
			}
			b, err := os.ReadFile(filepath.Join(m1, "etc", "os-release"))
			if err != nil || string(b) != "VERSION=1\n" {
				readErr = errors.Join(err, errors.New("read "+strings.TrimSpace(string(b))))
				return
			}
			reads++
			time.Sleep(20 * time.Millisecond)
		}
	}()
	var tarball bytes.Buffer
	if err := WriteTar(&tarball, tree("2")); err != nil {
		t.Fatal(err)
	}
	v2, err := m.Import(ctx, "contest", &tarball, "contest.tar", false)
	if err != nil || v2.Version != 2 || v2.Promoted {
		t.Fatalf("Import(tar) = %+v, %v; want staged version 2", v2, err)
	}
	if _, err := m.Promote(ctx, "contest@2"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // past the service's next database check
	close(quit)
	<-readerDone
	if readErr != nil || reads == 0 {
		t.Errorf("reading version 1 during the import and promote: %d reads, then %v", reads, readErr)
	}
	mount(t, "10.79.0.1:/roots/contest/2", m2)
	if b, err := os.ReadFile(filepath.Join(m2, "etc", "os-release")); err != nil || string(b) != "VERSION=2\n" {
		t.Errorf("version 2's os-release = %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(m2, "etc", "x"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("writing to version 2 = %v, want EROFS", err)
	}
	umount(t, m2)
	if err := m.Remove(ctx, "contest@1", false); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Remove(contest@1, read by pc-01 just now) = %v, want ErrConflict", err)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// mount mounts src on dir over the client namespace's link.
func mount(t *testing.T, src, dir string) {
	t.Helper()
	if out, err := exec.Command("nsenter", "--net=/run/netns/"+nsClient, "mount", "-t", "nfs4",
		"-o", "vers=4.2,soft,timeo=30,retrans=1", src, dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting %s: %v: %s", src, err, out)
	}
}

// umount unmounts dir, detaching it when the server does not answer in 20 s.
func umount(t *testing.T, dir string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- syscall.Unmount(dir, 0) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("unmounting %s: no answer within 20 s", dir)
		syscall.Unmount(dir, syscall.MNT_FORCE|syscall.MNT_DETACH)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
