package diskless

// Tier 3g: the client's mount steps (Plan + Apply, everything but the
// switch of root) against the kernel's nfsd inside a QEMU guest running
// kiln's kernel, served by the appliance's export library. One guest
// serves every check.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/qemu/guest"
	"kiln.dev/kiln/services/nfs"
)

// Names unique to this package, so parallel tests of others never clash.
const (
	nsClient = "kilndl-c" // pc-01, a host of the database with a root image and a home
	nsOther  = "kilndl-x" // an address the database does not know
)

func TestGuestMounts(t *testing.T) {
	if !guest.Enter(t, guest.Options{Modules: []string{"nfsd", "nfsv4", "overlay", "veth"}}) {
		return
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip is not installed on the host (apt-get install iproute2)")
	}
	data := t.TempDir() // tmpfs: nfsd cannot export the guest's 9p root
	root := filepath.Join(data, "nfs")
	image := filepath.Join(root, "roots", "contest", "1")
	home := filepath.Join(root, "homes", "lab")
	for _, d := range []string{filepath.Join(image, "etc"), filepath.Join(image, "sbin"), filepath.Join(image, "usr", "bin"), home} {
		mustMkdir(t, d)
	}
	writeFile(t, filepath.Join(image, "etc", "os-release"), "ID=contest\n")
	writeFile(t, filepath.Join(image, "usr", "bin", "init.sh"), "#!/bin/sh\necho contest\n")
	if err := os.Chmod(filepath.Join(image, "usr", "bin", "init.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/bin/init.sh", filepath.Join(image, "sbin", "init")); err != nil {
		t.Fatal(err)
	}

	netns(t, nsClient, "kilndl-s0", "10.79.0.1/24", "10.79.0.2/24")
	netns(t, nsOther, "kilndl-s1", "10.79.1.1/24", "10.79.1.2/24")
	in := nfs.Input{
		DataDir:    data,
		ExportRoot: root,
		Subnets:    []netip.Prefix{netip.MustParsePrefix("10.79.0.0/16")},
		Roots:      []nfs.RootImage{{Name: "contest", Version: 1, Promoted: true}},
		Homes:      []string{"lab"},
		Hosts:      []nfs.Host{{Name: "pc-01", Addrs: []netip.Addr{netip.MustParseAddr("10.79.0.2")}, Root: "contest", Home: "lab"}},
	}
	serve(t, in, filepath.Join(data, "v4recovery"))

	c, err := ParseCmdline("kiln.nfsroot=10.79.0.1:/roots/contest/1 kiln.nfshome=10.79.0.1:/homes/lab kiln.overlay=4M ip=dhcp")
	if err != nil {
		t.Fatal(err)
	}
	server := netip.MustParseAddr("10.79.0.1")
	// Not below t.TempDir: its removal would walk into the mounts.
	work, err := os.MkdirTemp("", "kilndl-")
	if err != nil {
		t.Fatal(err)
	}
	d := Dirs{Work: filepath.Join(work, "run"), NewRoot: filepath.Join(work, "newroot")}
	steps := Plan(c, Addrs{Root: server, Home: server, Client: netip.MustParseAddr("10.79.0.2")}, d)
	t.Cleanup(func() { unmountAll(t, steps) })

	var reports []error
	report := func(err error) { reports = append(reports, err) }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	inNetns(t, nsClient, func() {
		if err := Apply(ctx, steps, System{}, time.Second, report); err != nil {
			t.Fatalf("Apply: %v (earlier attempts: %v)", err, reports)
		}
	})

	t.Run("root image through the overlay", func(t *testing.T) {
		if got := readFile(t, filepath.Join(d.NewRoot, "etc", "os-release")); got != "ID=contest\n" {
			t.Errorf("os-release in the new root = %q", got)
		}
		if err := CheckInit(d.NewRoot, "/sbin/init"); err != nil {
			t.Errorf("CheckInit(new root) = %v", err)
		}
		lower := filepath.Join(d.Work, "root", "etc", "x")
		if err := os.WriteFile(lower, []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
			t.Errorf("writing to the NFS root itself = %v, want EROFS", err)
		}
	})
	t.Run("writes stay on the client", func(t *testing.T) {
		writeFile(t, filepath.Join(d.NewRoot, "etc", "hostname"), "pc-01\n")
		if err := os.Remove(filepath.Join(d.NewRoot, "etc", "os-release")); err != nil {
			t.Errorf("removing a root image file through the overlay: %v", err)
		}
		if _, err := os.Stat(filepath.Join(image, "etc", "hostname")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a write to the overlay reached the root image on the server (stat: %v)", err)
		}
		if got := readFile(t, filepath.Join(image, "etc", "os-release")); got != "ID=contest\n" {
			t.Errorf("the server's os-release after the client removed its copy = %q", got)
		}
	})
	t.Run("overlay size limit", func(t *testing.T) {
		err := os.WriteFile(filepath.Join(d.NewRoot, "big"), make([]byte, 8<<20), 0o644)
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("writing 8 MiB into a 4 MiB overlay = %v, want ENOSPC", err)
		}
		os.Remove(filepath.Join(d.NewRoot, "big"))
	})
	t.Run("home read-write on the server", func(t *testing.T) {
		writeFile(t, filepath.Join(d.NewRoot, "home", "notes"), "kept\n")
		if got := readFile(t, filepath.Join(home, "notes")); got != "kept\n" {
			t.Errorf("the home's file on the server = %q", got)
		}
	})
	t.Run("unknown address refused", func(t *testing.T) {
		other := Plan(c, Addrs{Root: netip.MustParseAddr("10.79.1.1"), Home: server, Client: netip.MustParseAddr("10.79.1.2")},
			Dirs{Work: filepath.Join(work, "other"), NewRoot: filepath.Join(work, "other-root")})
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var tries int
		inNetns(t, nsOther, func() {
			err = Apply(ctx, other[:2], System{}, time.Second, func(error) { tries++ })
		})
		if err == nil {
			unmountAll(t, other[:2])
			t.Fatal("an address unknown to the database mounted the root image")
		}
		if !strings.Contains(err.Error(), "10.79.1.1:/roots/contest/1") || tries == 0 {
			t.Errorf("Apply from an unknown address = %v after %d retries; want an error naming the export, retried", err, tries)
		}
		t.Logf("refused as expected: %v", err)
	})
}

// serve starts nfsd, applies in and answers the export upcalls until the
// test ends.
func serve(t *testing.T, in nfs.Input, recovery string) {
	t.Helper()
	k := nfs.Kernel{Dir: "/proc/fs/nfsd", RPC: "/proc/net/rpc", Threads: 4, Lease: 10 * time.Second, RecoveryDir: recovery, Port: 2049}
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	ch, err := k.OpenChannels()
	if err != nil {
		t.Fatal(err)
	}
	x := nfs.Exports{Answerer: &nfs.Answerer{}, Kernel: k}
	if _, _, err := x.Apply(in); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	go func() { done <- ch.Serve(ctx, x.Answerer, log) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		ch.Close()
		if err := k.Stop(); err != nil {
			t.Error(err)
		}
	})
}

// inNetns runs f on a thread in network namespace ns (the NFS client's
// connections belong to the namespace of the task that mounts), in this
// mount namespace.
func inNetns(t *testing.T, ns string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("entering %s: %v", ns, err)
	}
	defer func() {
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Errorf("leaving %s: %v", ns, err) // the thread stays locked and dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
	}()
	f()
}

// unmountAll detaches the plan's mounts, last first.
func unmountAll(t *testing.T, steps []Step) {
	for i := len(steps) - 1; i >= 0; i-- {
		if m := steps[i].Mount; m != nil {
			if err := unix.Unmount(m.Target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				t.Logf("unmounting %s: %v", m.Target, err)
			}
		}
	}
}

func netns(t *testing.T, ns, hostSide, hostAddr, nsAddr string) {
	t.Helper()
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "link", "add", hostSide, "type", "veth", "peer", "name", "eth0", "netns", ns)
	run(t, "ip", "addr", "add", hostAddr, "dev", hostSide)
	run(t, "ip", "link", "set", hostSide, "up")
	run(t, "ip", "-n", ns, "addr", "add", nsAddr, "dev", "eth0")
	run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func mustMkdir(t *testing.T, d string) {
	t.Helper()
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(fmt.Errorf("reading %s: %w", p, err))
	}
	return string(b)
}
