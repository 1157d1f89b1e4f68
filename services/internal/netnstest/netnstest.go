// Package netnstest builds throwaway network namespaces joined by veth pairs
// for the tier-3 tests of the network plane (netconf, firewall): it creates
// them with ip(8), runs Go code inside one on a locked OS thread (sockets
// made there stay in that namespace), and removes everything at cleanup.
package netnstest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Require skips t unless it runs as root with ip(8) and each of cmds.
func Require(t testing.TB, cmds ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	for _, c := range append([]string{"ip"}, cmds...) {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("needs %s on PATH (make deps installs it)", c)
		}
	}
}

var seq atomic.Int32

// NS is one named network namespace.
type NS struct {
	Name string
	h    netns.NsHandle
	t    testing.TB
}

// New creates a namespace named <prefix><pid>-<n> with lo up, removed when
// the test ends.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	name := fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), seq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("opening namespace %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	n := &NS{Name: name, h: h, t: t}
	n.IP("link", "set", "lo", "up")
	return n
}

// Handle is the namespace's open file descriptor.
func (n *NS) Handle() netns.NsHandle { return n.h }

// Fd is the namespace's file descriptor as an int.
func (n *NS) Fd() int { return int(n.h) }

// Exec runs a command inside the namespace and returns its combined output.
func (n *NS) Exec(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// IP runs "ip -n <ns> args…" and fails the test on error.
func (n *NS) IP(args ...string) string {
	n.t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("ip -n %s %s: %v\n%s", n.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Do runs f on an OS thread switched into the namespace. The thread is
// discarded afterwards, so the namespace never leaks into other goroutines.
func (n *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := netns.Set(n.h); err != nil {
			errc <- fmt.Errorf("entering namespace %s: %w", n.Name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// Listen opens a TCP listener inside the namespace that accepts and closes
// every connection.
func (n *NS) Listen(addr string) net.Listener {
	n.t.Helper()
	var ln net.Listener
	if err := n.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		n.t.Fatalf("listening on %s in %s: %v", addr, n.Name, err)
	}
	n.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

// Dial connects from inside the namespace with a timeout.
func (n *NS) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

// Veth joins a (interface aName) and b (bName) with a veth pair and brings
// both ends up. The pair is created inside the namespaces, never in the host's.
func Veth(t testing.TB, a *NS, aName string, b *NS, bName string) {
	t.Helper()
	if out, err := exec.Command("ip", "link", "add", aName, "netns", a.Name, "type", "veth", "peer", "name", bName, "netns", b.Name).CombinedOutput(); err != nil {
		t.Fatalf("creating veth %s/%s: %v\n%s", aName, bName, err, out)
	}
	a.IP("link", "set", aName, "up")
	b.IP("link", "set", bName, "up")
}

// HostLink is a namespace joined to the host's own namespace by a veth pair,
// for servers that run in the test process (in the host namespace) and
// clients that run inside the namespace.
type HostLink struct {
	*NS
	HostIf, NSIf string // veth ends: HostIf in the host, NSIf in NS
}

// NewHostLink creates a namespace (see New) and a veth pair with the given
// MTU (0: the default) whose host end gets hostAddr and namespace end nsAddrs
// (CIDR notation); both ends are up and removed when the test ends.
func NewHostLink(t testing.TB, prefix string, mtu int, hostAddr string, nsAddrs ...string) *HostLink {
	t.Helper()
	n := New(t, prefix)
	id := seq.Add(1)
	l := &HostLink{NS: n, HostIf: fmt.Sprintf("kh%d-%d", os.Getpid()%100000, id), NSIf: fmt.Sprintf("kn%d-%d", os.Getpid()%100000, id)}
	args := []string{"link", "add", l.HostIf}
	if mtu > 0 {
		args = append(args, "mtu", fmt.Sprint(mtu))
	}
	args = append(args, "type", "veth", "peer", "name", l.NSIf, "netns", n.Name)
	if mtu > 0 {
		args = append(args, "mtu", fmt.Sprint(mtu))
	}
	host := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	host(args...)
	t.Cleanup(func() { exec.Command("ip", "link", "del", l.HostIf).Run() })
	host("addr", "add", hostAddr, "dev", l.HostIf)
	host("link", "set", l.HostIf, "up")
	for _, a := range nsAddrs {
		n.IP("addr", "add", a, "dev", l.NSIf)
	}
	n.IP("link", "set", l.NSIf, "up")
	return l
}
