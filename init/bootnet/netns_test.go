package bootnet

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// The netns test runs the DHCP server and the client as copies of this test
// binary inside two network namespaces joined by a veth pair, so the client's
// address and route changes stay in its namespace.
const helperEnv = "KILN_BOOTNET_HELPER"

func TestLeaseInNetns(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("helper process")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	suffix := fmt.Sprint(os.Getpid())
	srv, cli := "kbn-s"+suffix, "kbn-c"+suffix
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	for _, ns := range []string{srv, cli} {
		run("netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	run("link", "add", "kbs0", "netns", srv, "type", "veth", "peer", "name", "kbc0", "netns", cli)
	run("-n", srv, "addr", "add", "10.77.0.1/24", "dev", "kbs0")
	run("-n", srv, "link", "set", "kbs0", "up")
	run("-n", srv, "link", "set", "lo", "up")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	server := exec.CommandContext(ctx, "ip", "netns", "exec", srv, os.Args[0], "-test.run=^TestHelper$", "-test.v")
	server.Env = append(os.Environ(), helperEnv+"=server")
	var serverOut strings.Builder
	server.Stdout, server.Stderr = &serverOut, &serverOut
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		server.Process.Kill()
		server.Wait()
		if t.Failed() {
			t.Logf("server:\n%s", serverOut.String())
		}
	}()
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	client := exec.CommandContext(ctx, "ip", "netns", "exec", cli, os.Args[0], "-test.run=^TestHelper$", "-test.v")
	client.Env = append(os.Environ(), helperEnv+"=client", "KILN_RESOLV="+resolv)
	out, err := client.CombinedOutput()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	for _, want := range []string{"inet 10.77.0.50/24", "default via 10.77.0.1 dev kbc0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("client namespace lacks %q:\n%s", want, out)
		}
	}
	b, _ := os.ReadFile(resolv)
	if !strings.Contains(string(b), "nameserver 10.77.0.1\n") || !strings.Contains(string(b), "search lab.test\n") {
		t.Errorf("resolv.conf = %q, want nameserver 10.77.0.1 and search lab.test", b)
	}
}

// TestHelper is the server or client half of TestLeaseInNetns.
func TestHelper(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "server":
		helperServer(t)
	case "client":
		helperClient(t)
	default:
		t.Skip("only run by TestLeaseInNetns")
	}
}

func helperServer(t *testing.T) {
	handler := func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		typ := dhcpv4.MessageTypeOffer
		if m.MessageType() == dhcpv4.MessageTypeRequest {
			typ = dhcpv4.MessageTypeAck
		}
		reply, err := dhcpv4.NewReplyFromRequest(m,
			dhcpv4.WithMessageType(typ),
			dhcpv4.WithYourIP(net.IPv4(10, 77, 0, 50)),
			dhcpv4.WithServerIP(net.IPv4(10, 77, 0, 1)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 77, 0, 1))),
			dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
			dhcpv4.WithRouter(net.IPv4(10, 77, 0, 1)),
			dhcpv4.WithDNS(net.IPv4(10, 77, 0, 1)),
			dhcpv4.WithOption(dhcpv4.OptDomainName("lab.test")),
			dhcpv4.WithLeaseTime(600),
		)
		if err != nil {
			t.Log(err)
			return
		}
		if p, ok := peer.(*net.UDPAddr); ok && p.IP.IsUnspecified() {
			peer = &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
		}
		if _, err := conn.WriteTo(reply.ToBytes(), peer); err != nil {
			t.Log(err)
		}
	}
	s, err := server4.NewServer("kbs0", &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, handler)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	time.Sleep(50 * time.Second) // the parent kills us
	s.Close()
}

func helperClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	resolv := os.Getenv("KILN_RESOLV")
	r := &resolver{path: resolv, byIf: map[string]Lease{}}
	if err := LoopbackUp(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		keepLease(ctx, "kbc0", "kiln-test", r, slog.New(slog.NewTextHandler(os.Stderr, nil)))
		close(done)
	}()
	for {
		if _, err := os.Stat(resolv); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("no lease within 40s")
		case <-time.After(100 * time.Millisecond):
		}
	}
	cancel()
	<-done
	for _, args := range [][]string{{"-4", "addr", "show", "kbc0"}, {"-4", "route"}} {
		out, _ := exec.Command("ip", args...).CombinedOutput()
		fmt.Printf("%s\n", out)
	}
}
