package iscsi

// Tier 3g: kiln's LIO state against the real kernel target and open-iscsi,
// inside a qemu/guest guest (one guest for every check).
//
// The initiator (iscsid) runs in the guest's first network namespace: the
// kernel's iSCSI transport netlink (NETLINK_ISCSI) exists only there, so
// an iscsid in another namespace dies at login. The target side goes into
// a namespace instead: LIO opens a portal's socket in the namespace of the
// process that creates it, so Apply runs on a thread moved into kis-tgt,
// and the initiator reaches the portal over a veth pair, as a thin node
// reaches the appliance's provisioning address.

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"kiln.dev/kiln/qemu/guest"
)

const (
	netnsTarget = "kis-tgt"
	portalAddr  = "10.77.0.1"
	volSize     = 16 << 20
)

func TestLIO(t *testing.T) {
	if !guest.Enter(t, guest.Options{Modules: []string{"target_core_file", "iscsi_target_mod", "iscsi_tcp", "veth"}}) {
		return
	}
	needTools(t)
	cfs := Configfs{Root: DefaultRoot, Prefix: hall.Prefix}
	if err := cfs.Prepare(); err != nil {
		t.Fatal(err)
	}
	setupNetns(t)
	dir := t.TempDir()
	in := Inputs{
		Names:   hall,
		Portals: []netip.AddrPort{mustAddrPort(portalAddr + ":3260")},
		Initiators: []Initiator{
			{Host: "node1", IQN: hall.Initiator("node1"), CHAP: CHAP{UserID: "node1", Password: "node1-secret-0123",
				MutualUserID: "kiln", MutualPassword: "kiln-mutual-4567"}},
			{Host: "node2", IQN: hall.Initiator("node2"), CHAP: CHAP{UserID: "node2", Password: "node2-secret-0123"}},
		},
	}
	for _, v := range []struct{ host, name string }{{"node1", "boot"}, {"node1", "data"}, {"node2", "boot"}} {
		f := filepath.Join(dir, Serial(v.host, v.name)+".img")
		if err := sparse(f, volSize); err != nil {
			t.Fatal(err)
		}
		in.Volumes = append(in.Volumes, Volume{Host: v.host, Name: v.name, File: f, Size: volSize})
	}
	// An operator's own target, not kiln's: it must survive every apply.
	foreign := filepath.Join(DefaultRoot, "iscsi", "iqn.2003-01.org.linux-iscsi.other:keep", "tpgt_1")
	if err := os.MkdirAll(foreign, 0o755); err != nil {
		t.Fatal(err)
	}
	converge := func(t *testing.T, in Inputs) {
		t.Helper()
		want := mustDesired(t, in)
		if err := inNetns(netnsTarget, func() error { return apply(cfs, want) }); err != nil {
			t.Fatal(err)
		}
		have, err := cfs.Observe()
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, have, cmpState, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("after apply, configfs holds (-want +got):\n%s", d)
		}
		if p := Diff(have, want); len(p) != 0 {
			t.Fatalf("a second apply would change:\n%s", p)
		}
	}
	defer func() {
		iscsiadm(t, "-m", "node", "--logoutall=all")
		if err := apply(cfs, State{}); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if st, err := cfs.Observe(); err != nil || len(st.Targets)+len(st.Backstores) != 0 {
			t.Errorf("after teardown configfs holds %+v, %v; want nothing of kiln's", st, err)
		}
		os.Remove(foreign)
		os.Remove(filepath.Dir(foreign))
	}()

	t.Run("apply twice changes nothing", func(t *testing.T) {
		converge(t, in)
		converge(t, in)
	})

	target1 := hall.Target("node1")
	portal := portalAddr + ":3260"
	setInitiatorName(t, in.Initiators[0].IQN)
	if out, err := run("iscsid"); err != nil {
		t.Fatalf("iscsid: %v\n%s", err, out)
	}

	t.Run("discovery shows only the host's own target", func(t *testing.T) {
		out, err := iscsiadm(t, "-m", "discovery", "-t", "st", "-p", portal)
		if err != nil {
			t.Fatalf("discovery: %v\n%s", err, out)
		}
		if !strings.Contains(out, target1) || strings.Contains(out, hall.Target("node2")) {
			t.Errorf("discovery as node1 = %q, want %s and not node2's target", out, target1)
		}
	})

	t.Run("wrong secret refused", func(t *testing.T) {
		setCHAP(t, "default", target1, portal, in.Initiators[0].CHAP, "not-the-secret-9")
		out, err := iscsiadm(t, "-m", "node", "-T", target1, "-p", portal, "--login")
		if err == nil || !strings.Contains(out, "authorization failure") {
			t.Errorf("login with a wrong secret = %v\n%s, want an authorization failure", err, out)
		}
		// Mutual CHAP: the initiator refuses a target that cannot prove
		// the secret the initiator expects.
		c := in.Initiators[0].CHAP
		c.MutualPassword = "not-the-mutual-9"
		setCHAP(t, "default", target1, portal, c, "")
		if out, err := iscsiadm(t, "-m", "node", "-T", target1, "-p", portal, "--login"); err == nil {
			t.Errorf("login expecting another mutual secret succeeded\n%s", out)
		}
	})

	t.Run("foreign initiator refused", func(t *testing.T) {
		// node2's IQN, with node1's own secret, at node1's target.
		for _, args := range [][]string{{"-m", "iface", "-I", "kis-foreign", "-o", "new"},
			{"-m", "iface", "-I", "kis-foreign", "-o", "update", "-n", "iface.initiatorname", "-v", in.Initiators[1].IQN},
			{"-m", "node", "-o", "new", "-T", target1, "-p", portal, "-I", "kis-foreign"}} {
			if out, err := iscsiadm(t, args...); err != nil {
				t.Fatalf("iscsiadm %v: %v\n%s", args, err, out)
			}
		}
		setCHAP(t, "kis-foreign", target1, portal, in.Initiators[0].CHAP, "")
		out, err := iscsiadm(t, "-m", "node", "-T", target1, "-p", portal, "-I", "kis-foreign", "--login")
		if err == nil || !strings.Contains(out, "authorization failure") {
			t.Errorf("login as %s = %v\n%s, want an authorization failure", in.Initiators[1].IQN, err, out)
		}
		iscsiadm(t, "-m", "node", "-o", "delete", "-T", target1, "-p", portal, "-I", "kis-foreign")
	})

	var disk string
	t.Run("login with mutual CHAP, write and read back", func(t *testing.T) {
		setCHAP(t, "default", target1, portal, in.Initiators[0].CHAP, "")
		if out, err := iscsiadm(t, "-m", "node", "-T", target1, "-p", portal, "-I", "default", "--login"); err != nil {
			t.Fatalf("login: %v\n%s", err, out)
		}
		disk = diskWithSerial(t, Serial("node1", "boot"))
		pattern := bytes.Repeat([]byte("kiln-iscsi\n"), 4096/11+1)[:4096]
		f, err := os.OpenFile(disk, os.O_RDWR|unix.O_DIRECT|os.O_SYNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		buf := alignedBlock(4096)
		copy(buf, pattern)
		if _, err := f.WriteAt(buf, 1<<20); err != nil {
			t.Fatalf("writing %s: %v", disk, err)
		}
		clear(buf)
		if _, err := f.ReadAt(buf, 1<<20); err != nil || !bytes.Equal(buf, pattern) {
			t.Errorf("reading %s back = %q…, %v; want the pattern", disk, buf[:16], err)
		}
		b := make([]byte, 4096)
		bf, err := os.Open(in.Volumes[0].File)
		if err != nil {
			t.Fatal(err)
		}
		defer bf.Close()
		if _, err := bf.ReadAt(b, 1<<20); err != nil || !bytes.Equal(b, pattern) {
			t.Errorf("volume file at 1 MiB = %q…, %v; want the pattern the initiator wrote", b[:16], err)
		}
	})

	t.Run("grow seen after rescan", func(t *testing.T) {
		if disk == "" {
			t.Skip("no session")
		}
		grown := in
		grown.Volumes = append([]Volume(nil), in.Volumes...)
		grown.Volumes[0].Size = 2 * volSize
		if err := os.Truncate(grown.Volumes[0].File, 2*volSize); err != nil {
			t.Fatal(err)
		}
		have, err := cfs.Observe()
		if err != nil {
			t.Fatal(err)
		}
		if p := Diff(have, mustDesired(t, grown)); len(p) != 1 || p[0].Op != OpResize {
			t.Errorf("growing a volume plans:\n%s, want one resize", p)
		}
		converge(t, grown)
		if out, err := iscsiadm(t, "-m", "session", "-R"); err != nil {
			t.Fatalf("rescan: %v\n%s", err, out)
		}
		in = grown
		sizeFile := filepath.Join("/sys/class/block", filepath.Base(disk), "size")
		var sectors string
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			b, _ := os.ReadFile(sizeFile)
			if sectors = strings.TrimSpace(string(b)); sectors == fmt.Sprint(2*volSize/512) {
				return
			}
		}
		t.Errorf("%s = %s sectors after the rescan, want %d", sizeFile, sectors, 2*volSize/512)
	})

	t.Run("orphans removed, foreign target kept", func(t *testing.T) {
		less := in
		less.Initiators = in.Initiators[:1]
		converge(t, less)
		if _, err := os.Stat(filepath.Join(DefaultRoot, "iscsi", hall.Target("node2"))); err == nil {
			t.Errorf("node2's target is still there")
		}
		if _, err := os.Stat(foreign); err != nil {
			t.Errorf("the operator's own target went away: %v", err)
		}
	})
}

// needTools skips t without open-iscsi's and iproute2's commands.
func needTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"iscsid", "iscsiadm", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install open-iscsi iproute2)", tool)
		}
	}
}

// apply makes configfs hold want.
func apply(cfs Configfs, want State) error {
	have, err := cfs.Observe()
	if err != nil {
		return err
	}
	return cfs.Apply(Diff(have, want))
}

func setupNetns(t testing.TB) {
	t.Helper()
	t.Cleanup(func() { run("ip", "netns", "del", netnsTarget) })
	for _, args := range [][]string{
		{"ip", "netns", "add", netnsTarget},
		{"ip", "link", "add", "kis-i", "type", "veth", "peer", "name", "kis-t", "netns", netnsTarget},
		{"ip", "addr", "add", "10.77.0.2/24", "dev", "kis-i"},
		{"ip", "link", "set", "kis-i", "up"},
		{"ip", "-n", netnsTarget, "addr", "add", portalAddr + "/24", "dev", "kis-t"},
		{"ip", "-n", netnsTarget, "link", "set", "kis-t", "up"},
		{"ip", "-n", netnsTarget, "link", "set", "lo", "up"},
	} {
		if out, err := run(args...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// inNetns runs f on an OS thread moved into the named network namespace.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		ns, err := os.Open("/run/netns/" + name)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering netns %s: %w", name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

func setInitiatorName(t *testing.T, iqn string) {
	t.Helper()
	if err := os.MkdirAll("/etc/iscsi", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/etc/iscsi/initiatorname.iscsi", []byte("InitiatorName="+iqn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// setCHAP stores c in the node record; a non-empty wrong replaces the secret.
func setCHAP(t *testing.T, iface, target, portal string, c CHAP, wrong string) {
	t.Helper()
	secret := c.Password
	if wrong != "" {
		secret = wrong
	}
	args := []string{"-m", "node", "-T", target, "-p", portal, "-I", iface, "-o", "update",
		"-n", "node.session.auth.authmethod", "-v", "CHAP",
		"-n", "node.session.auth.username", "-v", c.UserID,
		"-n", "node.session.auth.password", "-v", secret}
	if c.MutualUserID != "" {
		args = append(args, "-n", "node.session.auth.username_in", "-v", c.MutualUserID,
			"-n", "node.session.auth.password_in", "-v", c.MutualPassword)
	}
	if out, err := iscsiadm(t, args...); err != nil {
		t.Fatalf("setting CHAP: %v\n%s", err, out)
	}
}

// diskWithSerial waits for the SCSI disk whose unit serial is serial.
func diskWithSerial(t testing.TB, serial string) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		blocks, _ := filepath.Glob("/sys/class/scsi_disk/*/device/block/sd*")
		for _, b := range blocks {
			vpd, _ := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(b)), "vpd_pg80"))
			if bytes.Contains(vpd, []byte(serial)) {
				return "/dev/" + filepath.Base(b)
			}
		}
	}
	t.Fatalf("no SCSI disk with serial %s appeared", serial)
	return ""
}

func alignedBlock(n int) []byte {
	b := make([]byte, n+4096)
	off := 4096 - int(uintptr(unsafePointer(b))&4095)
	return b[off : off+n]
}

func sparse(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func iscsiadm(t *testing.T, args ...string) (string, error) {
	out, err := run(append([]string{"iscsiadm"}, args...)...)
	t.Logf("iscsiadm %s: %v\n%s", strings.Join(args, " "), err, out)
	return out, err
}

func run(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	return string(out), err
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
