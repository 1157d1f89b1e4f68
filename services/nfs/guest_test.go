package nfs

// Tier 3g: the kernel's nfsd and NFS client inside a QEMU guest running
// kiln's kernel. One guest serves every check.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/qemu/guest"
)

// Names unique to this package, so parallel tests of others never clash.
const (
	nsClient  = "kilnnfs-c" // a known host inside the subnet
	nsOutside = "kilnnfs-x" // a host the DB knows, outside the subnets
)

func TestGuestExports(t *testing.T) {
	if !guest.Enter(t, guest.Options{Modules: []string{"nfsd", "nfsv4", "veth", "loop", "ext4"}}) {
		return
	}
	for _, tool := range []string{"ip", "nsenter", "mount.nfs4", "mke2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed on the host (apt-get install iproute2 util-linux nfs-common)", tool)
		}
	}
	data := t.TempDir() // tmpfs: nfsd cannot export the guest's 9p root
	root := filepath.Join(data, "nfs")
	image := filepath.Join(root, "roots", "contest", "1")
	home := filepath.Join(root, "homes", "lab")
	for _, d := range []string{filepath.Join(image, "etc"), home, filepath.Join(root, "roots", "staff", "1")} {
		mustMkdir(t, d)
	}
	writeFile(t, filepath.Join(image, "etc", "os-release"), "ID=contest\n")
	writeFile(t, filepath.Join(data, "kiln.db"), "the machine database\n")

	netns(t, nsClient, "kilnnfs-s0", "10.77.0.1/24", "10.77.0.2/24")
	netns(t, nsOutside, "kilnnfs-s1", "10.78.0.1/24", "10.78.0.2/24")

	in := Input{
		DataDir:    data,
		ExportRoot: root,
		Subnets:    []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")},
		Roots:      []RootImage{{Name: "contest", Version: 1, Promoted: true}, {Name: "staff", Version: 1, Promoted: true}},
		Homes:      []string{"lab"},
		Hosts: []Host{
			{Name: "pc-01", Addrs: []netip.Addr{netip.MustParseAddr("10.77.0.2")}, Root: "contest", Home: "lab"},
			{Name: "far", Addrs: []netip.Addr{netip.MustParseAddr("10.78.0.2")}, Root: "contest", Home: "lab"},
		},
	}
	k := Kernel{Dir: "/proc/fs/nfsd", RPC: "/proc/net/rpc", Threads: 4, Lease: 10 * time.Second,
		RecoveryDir: filepath.Join(data, "v4recovery"), Port: 2049}
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.Stop(); err != nil {
			t.Error(err)
		}
	})
	stop := serve(t, k, in)

	// Not below t.TempDir: its removal would walk into a mount left behind
	// (see the known issue at the end). The guest's /tmp dies with it.
	mnt, err := os.MkdirTemp("", "kilnnfs-mnt")
	if err != nil {
		t.Fatal(err)
	}
	rootMnt, homeMnt := filepath.Join(mnt, "root"), filepath.Join(mnt, "home")
	mustMkdir(t, rootMnt)
	mustMkdir(t, homeMnt)

	t.Run("root read-only", func(t *testing.T) {
		mount(t, nsClient, "10.77.0.1:/roots/contest/1", rootMnt)
		if got := readFile(t, filepath.Join(rootMnt, "etc", "os-release")); got != "ID=contest\n" {
			t.Errorf("os-release over NFS = %q", got)
		}
		err := os.WriteFile(filepath.Join(rootMnt, "etc", "new"), []byte("x"), 0o644)
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("writing to the root image = %v, want EROFS", err)
		}
	})
	t.Run("home read-write", func(t *testing.T) {
		mount(t, nsClient, "10.77.0.1:/homes/lab", homeMnt)
		writeFile(t, filepath.Join(homeMnt, "notes"), "kept\n")
		if got := readFile(t, filepath.Join(home, "notes")); got != "kept\n" {
			t.Errorf("the home's file on the server = %q", got)
		}
	})
	t.Run("only what the host may mount", func(t *testing.T) {
		for _, path := range []string{"/roots/staff/1", "/"} {
			dir := t.TempDir()
			out, err := mountCmd(nsClient, "10.77.0.1:"+path, dir)
			if path == "/" {
				// The pseudo-root mounts, but lists only the way to pc-01's exports.
				if err != nil {
					t.Fatalf("mounting the pseudo-root: %v: %s", err, out)
				}
				roots, _ := os.ReadDir(filepath.Join(dir, "roots"))
				if len(roots) != 1 || roots[0].Name() != "contest" {
					t.Errorf("pc-01 sees roots %v, want only contest", names(roots))
				}
				if _, err := os.Stat(filepath.Join(dir, "kiln.db")); err == nil {
					t.Error("the pseudo-root shows the data partition's files")
				}
				umount(t, dir)
				continue
			}
			if err == nil {
				umount(t, dir)
				t.Errorf("pc-01 mounted %s, which is not its root image", path)
			}
		}
	})
	t.Run("outside the subnet refused", func(t *testing.T) {
		dir := t.TempDir()
		out, err := mountCmd(nsOutside, "10.78.0.1:/roots/contest/1", dir)
		if err == nil {
			umount(t, dir)
			t.Fatal("a host outside the provisioning subnets mounted the root image")
		}
		t.Logf("refused as expected: %s", out)
	})
	t.Run("two applies change nothing", func(t *testing.T) {
		readFile(t, filepath.Join(rootMnt, "etc", "os-release")) // fill the caches
		before := readFile(t, "/proc/net/rpc/nfsd.export/content")
		_, changed, err := stop.exports.Apply(in)
		if err != nil || changed {
			t.Errorf("Apply(same input) = changed %v, %v; want no change", changed, err)
		}
		if after := readFile(t, "/proc/net/rpc/nfsd.export/content"); after != before {
			t.Errorf("the kernel's export cache changed on a second apply:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		if !strings.Contains(before, root+"/roots/contest/1") {
			t.Errorf("the kernel's export cache lacks the root image:\n%s", before)
		}
	})
	t.Run("bad input keeps the exports in force", func(t *testing.T) {
		bad := in
		bad.ExportRoot = data
		if _, _, err := stop.exports.Apply(bad); !errors.Is(err, ErrExposesData) {
			t.Errorf("Apply(export root = data partition) = %v, want ErrExposesData", err)
		}
		mustMkdir(t, filepath.Join(root, "roots", "evil"))
		link := filepath.Join(root, "roots", "evil", "1")
		if err := os.Symlink(data, link); err != nil {
			t.Fatal(err)
		}
		bad = in
		bad.Roots = append(bad.Roots, RootImage{Name: "evil", Version: 1, Promoted: true})
		bad.Hosts = append(bad.Hosts, Host{Name: "pc-02", Addrs: []netip.Addr{netip.MustParseAddr("10.77.0.3")}, Root: "evil"})
		if _, _, err := stop.exports.Apply(bad); !errors.Is(err, ErrExposesData) {
			t.Errorf("Apply(root image through a symlink to the data partition) = %v, want ErrExposesData", err)
		}
		os.RemoveAll(filepath.Join(root, "roots", "evil"))
		if got := readFile(t, filepath.Join(rootMnt, "etc", "os-release")); got != "ID=contest\n" {
			t.Errorf("after refused applies, os-release = %q", got)
		}
	})
	t.Run("survives a service restart", func(t *testing.T) {
		stop.cancel()
		stop = serve(t, k, in) // a new process: empty answerer, caches flushed
		if got := readFile(t, filepath.Join(rootMnt, "etc", "os-release")); got != "ID=contest\n" {
			t.Errorf("os-release after the restart = %q", got)
		}
		if got := readFile(t, filepath.Join(homeMnt, "notes")); got != "kept\n" {
			t.Errorf("home file after the restart = %q", got)
		}
		writeFile(t, filepath.Join(homeMnt, "after"), "still writable\n")
	})
	umount(t, homeMnt)
	// Known issue (docs/diskless.md): after this bare answerer restarts,
	// the root image's last unmount waits in DELEGRETURN on an nfsd.fh
	// entry left pending (its upcall never reaches the new reader). The
	// service's own restart (the "service" subtest) unmounts cleanly.
	// Detach it; the guest's power-off takes it down.
	detached := make(chan error, 1)
	go func() { detached <- syscall.Unmount(rootMnt, syscall.MNT_FORCE|syscall.MNT_DETACH) }()
	select {
	case err := <-detached:
		t.Logf("root image unmounted (%v)", err)
	case <-time.After(5 * time.Second):
		t.Logf("root image unmount still waiting (known issue); left to the guest's power-off")
	}
	stop.cancel()
	t.Run("service", func(t *testing.T) { checkService(t, mnt) })
}

// running is one instance of the export service's mountd role.
type running struct {
	exports Exports
	cancel  func()
}

// serve applies in and answers upcalls until the returned cancel.
func serve(t *testing.T, k Kernel, in Input) *running {
	t.Helper()
	r := &running{exports: Exports{Answerer: &Answerer{}, Kernel: k}}
	ch, err := k.OpenChannels()
	if err != nil {
		t.Fatal(err)
	}
	if _, changed, err := r.exports.Apply(in); err != nil || !changed {
		t.Fatalf("first Apply = changed %v, %v; want a change", changed, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := testlog.New(t, slog.LevelDebug)
	go func() { done <- ch.Serve(ctx, r.exports.Answerer, log) }()
	var once bool
	r.cancel = func() {
		if once {
			return
		}
		once = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		ch.Close()
	}
	t.Cleanup(r.cancel)
	return r
}

// netns makes namespace ns joined to this one by a veth pair: hostSide
// here with hostAddr, eth0 there with nsAddr.
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

// mountCmd mounts src on dir from namespace ns: the NFS client's
// connection lives there, the mount in this mount namespace.
func mountCmd(ns, src, dir string) (string, error) {
	out, err := exec.Command("nsenter", "--net=/run/netns/"+ns, "mount", "-t", "nfs4",
		"-o", "vers=4.2,soft,timeo=30,retrans=1", src, dir).CombinedOutput()
	return string(out), err
}

func mount(t *testing.T, ns, src, dir string) {
	t.Helper()
	if out, err := mountCmd(ns, src, dir); err != nil {
		t.Fatalf("mounting %s from %s: %v: %s", src, ns, err, out)
	}
}

// umount unmounts dir, forcing it (which aborts the client's pending
// requests) when the server has not answered within a minute.
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
		t.Errorf("unmounting %s: no answer within 20 s; kernel stacks:\n%s", dir, stacks())
		syscall.Unmount(dir, syscall.MNT_FORCE|syscall.MNT_DETACH)
	}
}

// stacks returns the kernel stacks of this process's threads and of the
// nfsd threads, to show where an NFS operation waits.
func stacks() string {
	var b strings.Builder
	paths, _ := filepath.Glob("/proc/self/task/*/stack")
	procs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, c := range procs {
		if comm, _ := os.ReadFile(c); strings.HasPrefix(string(comm), "nfsd") || strings.HasPrefix(string(comm), "kworker") {
			paths = append(paths, filepath.Join(filepath.Dir(c), "stack"))
		}
	}
	for _, c := range caches {
		content, _ := os.ReadFile("/proc/net/rpc/" + c + "/content")
		fmt.Fprintf(&b, "%s cache:\n%s\n", c, content)
	}
	for _, p := range paths {
		st, _ := os.ReadFile(p)
		if s := strings.TrimSpace(string(st)); s != "" && !strings.Contains(s, "worker_thread") && !strings.Contains(s, "futex") {
			comm, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "comm"))
			fmt.Fprintf(&b, "%s (%s):\n%s\n", p, strings.TrimSpace(string(comm)), s)
		}
	}
	return b.String()
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func names(es []os.DirEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
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
		t.Fatal(err)
	}
	return string(b)
}
