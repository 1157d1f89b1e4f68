package firewall

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pin/tftp/v3"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/internal/netnstest"
)

// Tier 3: real nf_tables in network namespaces the tests create.
//
//	mgmt peer 192.168.1.2 ── mgmt0 192.168.1.10 ┐
//	prov peer 10.0.0.50   ── prov0 10.0.0.1     ├ kiln
//	up peer   203.0.113.1 ── up0   203.0.113.2  ┘
const topoConfig = `
management: {https_port: 8443, http_port: 0}
network:
  interfaces:
    - {name: mgmt0, role: management, addresses: [192.168.1.10/24]}
    - {name: prov0, role: provisioning, addresses: [10.0.0.1/24]}
    - {name: up0, role: upstream, addresses: [203.0.113.2/24]}
firewall:
  masquerade: {hosts: [10.0.0.50]}
provisioning:
  subnets:
    - {name: a, interface: prov0, cidr: 10.0.0.0/24, mode: authoritative, pool: {start: 10.0.0.100, end: 10.0.0.199}}
`

type topo struct {
	kiln, mgmt, prov, up *netnstest.NS
	fw                   *Firewall
}

func newTopo(t *testing.T) *topo {
	netnstest.Require(t, "nft")
	tp := &topo{
		kiln: netnstest.New(t, "kfw-k"),
		mgmt: netnstest.New(t, "kfw-m"),
		prov: netnstest.New(t, "kfw-p"),
		up:   netnstest.New(t, "kfw-u"),
	}
	for _, l := range []struct {
		kif, kaddr string
		peer       *netnstest.NS
		paddr, gw  string
	}{
		{"mgmt0", "192.168.1.10/24", tp.mgmt, "192.168.1.2/24", ""},
		{"prov0", "10.0.0.1/24", tp.prov, "10.0.0.50/24", "10.0.0.1"},
		{"up0", "203.0.113.2/24", tp.up, "203.0.113.1/24", ""},
	} {
		netnstest.Veth(t, tp.kiln, l.kif, l.peer, "eth0")
		tp.kiln.IP("addr", "add", l.kaddr, "dev", l.kif)
		l.peer.IP("addr", "add", l.paddr, "dev", "eth0")
		if l.gw != "" {
			l.peer.IP("route", "add", "default", "via", l.gw)
		}
	}
	// A second provisioning host that is not allowed out.
	tp.prov.IP("addr", "add", "10.0.0.51/24", "dev", "eth0")
	tp.fw = New(tp.kiln.Fd())
	c, err := config.Parse(strings.NewReader(topoConfig))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.fw.Apply(r); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return tp
}

func listRuleset(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	out, err := ns.Exec(context.Background(), "nft", "list", "ruleset")
	if err != nil {
		t.Fatalf("nft list ruleset: %v\n%s", err, out)
	}
	return out
}

// TestObjectsMatchText loads each golden ruleset twice — as text through
// nft -f and as objects through Apply — and compares what the kernel lists.
// Then it applies again and expects no change at all.
func TestObjectsMatchText(t *testing.T) {
	netnstest.Require(t, "nft")
	for name := range configs {
		t.Run(name, func(t *testing.T) {
			r, err := Render(mustConfig(t, name))
			if err != nil {
				t.Fatal(err)
			}
			a, b := netnstest.New(t, "kfw-a"), netnstest.New(t, "kfw-b")
			f := filepath.Join(t.TempDir(), "r.nft")
			os.WriteFile(f, []byte(r.Text()), 0o644)
			if out, err := a.Exec(context.Background(), "nft", "-f", f); err != nil {
				t.Fatalf("nft -f: %v\n%s", err, out)
			}
			fw := New(b.Fd())
			changed, err := fw.Apply(r)
			if err != nil || !changed {
				t.Fatalf("Apply(%s) = %v, %v; want true, nil", name, changed, err)
			}
			text, objs := listRuleset(t, a), listRuleset(t, b)
			if diff := cmp.Diff(text, objs); diff != "" {
				t.Errorf("ruleset from objects differs from nft -f of the text (-text +objects):\n%s", diff)
			}
			if h, err := fw.Applied(); err != nil || h != r.Hash() {
				t.Errorf("Applied() = %q, %v; want %q", h, err, r.Hash())
			}
			changed, err = fw.Apply(r)
			if err != nil || changed {
				t.Errorf("second Apply(%s) = %v, %v; want false, nil", name, changed, err)
			}
			if again := listRuleset(t, b); again != objs {
				t.Errorf("second Apply changed the ruleset:\n%s", cmp.Diff(objs, again))
			}
		})
	}
}

// probe reports whether a TCP connect from ns to addr succeeds; a failure
// must be a timeout (the packet was dropped, not refused).
func probe(t *testing.T, ns *netnstest.NS, addr string) bool {
	t.Helper()
	return probeFor(t, ns, addr, 700*time.Millisecond)
}

// expect is the dial timeout for a probe expected to connect (generous: the
// machine may be busy) or to be dropped (a drop always takes the whole timeout).
func expect(connects bool) time.Duration {
	if connects {
		return 3 * time.Second
	}
	return 700 * time.Millisecond
}

func probeFor(t *testing.T, ns *netnstest.NS, addr string, timeout time.Duration) bool {
	t.Helper()
	c, err := ns.Dial("tcp", addr, timeout)
	if err == nil {
		c.Close()
		return true
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("dial %s from %s: %v, want success or a timeout (dropped)", addr, ns.Name, err)
	}
	return false
}

func TestPortsPerRole(t *testing.T) {
	tp := newTopo(t)
	for _, p := range []string{"8443", "8080", "3260", "2049", "53", "22", "9999"} {
		tp.kiln.Listen(":" + p)
	}
	tests := []struct {
		from *netnstest.NS
		addr string
		want bool
	}{
		{tp.mgmt, "192.168.1.10:8443", true},
		{tp.mgmt, "192.168.1.10:8080", false},
		{tp.mgmt, "192.168.1.10:22", false},
		{tp.prov, "10.0.0.1:8080", true},
		{tp.prov, "10.0.0.1:3260", true},
		{tp.prov, "10.0.0.1:2049", true},
		{tp.prov, "10.0.0.1:53", true},
		{tp.prov, "10.0.0.1:8443", false},
		{tp.prov, "10.0.0.1:22", false},
		{tp.prov, "10.0.0.1:9999", false},
		{tp.prov, "192.168.1.10:8443", false}, // the management address, reached through prov0
		{tp.up, "203.0.113.2:8443", false},
		{tp.up, "203.0.113.2:8080", false},
		{tp.up, "203.0.113.2:22", false},
	}
	for _, tt := range tests {
		if got := probeFor(t, tt.from, tt.addr, expect(tt.want)); got != tt.want {
			t.Errorf("connect %s → %s = %v, want %v", tt.from.Name, tt.addr, got, tt.want)
		}
	}

	// DNS over UDP: provisioning yes, upstream no.
	var udp net.PacketConn
	if err := tp.kiln.Do(func() (err error) { udp, err = net.ListenPacket("udp", ":53"); return err }); err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			udp.WriteTo(buf[:n], from)
		}
	}()
	for _, tt := range []struct {
		from *netnstest.NS
		addr string
		want bool
	}{{tp.prov, "10.0.0.1:53", true}, {tp.up, "203.0.113.2:53", false}, {tp.mgmt, "192.168.1.10:53", false}} {
		got := false
		err := tt.from.Do(func() error {
			c, err := net.Dial("udp", tt.addr)
			if err != nil {
				return err
			}
			defer c.Close()
			c.Write([]byte("ping"))
			c.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
			_, err = c.Read(make([]byte, 16))
			got = err == nil
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("UDP echo %s → %s = %v, want %v", tt.from.Name, tt.addr, got, tt.want)
		}
	}

	// Ping is accepted (rate limited) on every role.
	for _, tt := range []struct {
		from *netnstest.NS
		addr string
	}{{tp.mgmt, "192.168.1.10"}, {tp.prov, "10.0.0.1"}, {tp.up, "203.0.113.2"}} {
		if err := ping(tt.from, tt.addr); err != nil {
			t.Errorf("ping %s from %s: %v", tt.addr, tt.from.Name, err)
		}
	}

	// kiln's own connections out of the upstream get their replies.
	tp.up.Listen("203.0.113.1:80")
	if !probeFor(t, tp.kiln, "203.0.113.1:80", expect(true)) {
		t.Errorf("kiln → upstream 203.0.113.1:80 failed: replies (established) must be accepted")
	}

	// Drops are counted.
	out := listRuleset(t, tp.kiln)
	input := out[strings.Index(out, "chain input {"):]
	input = input[:strings.Index(input, "}")]
	m := regexp.MustCompile(`counter packets (\d+) bytes \d+ drop\s*$`).FindStringSubmatch(input)
	if m == nil || m[1] == "0" {
		t.Errorf("the input chain's final drop counter did not count the dropped probes:\n%s", input)
	}
}

func TestBanThenExpiry(t *testing.T) {
	tp := newTopo(t)
	tp.kiln.Listen(":8080")
	if !probeFor(t, tp.prov, "10.0.0.1:8080", expect(true)) {
		t.Fatal("provisioning peer cannot reach 10.0.0.1:8080 before the ban")
	}
	var b Banner = tp.fw
	peer := netip.MustParseAddr("10.0.0.50")
	if err := b.Ban(context.Background(), peer, time.Minute); err != nil {
		t.Fatalf("Ban: %v", err)
	}
	// Banning again restarts the timeout with the new duration.
	if err := b.Ban(context.Background(), peer, 2*time.Second); err != nil {
		t.Fatalf("second Ban: %v", err)
	}
	start := time.Now()
	bans, err := tp.fw.Bans()
	if err != nil || len(bans) != 1 || bans[0].Addr != peer || bans[0].Expires <= 0 || bans[0].Expires > 2*time.Second {
		t.Fatalf("Bans() = %v, %v; want [%s with ≤2s left]", bans, err, peer)
	}
	if probe(t, tp.prov, "10.0.0.1:8080") {
		t.Fatal("banned source still connects")
	}
	time.Sleep(time.Until(start.Add(2500 * time.Millisecond)))
	if !probeFor(t, tp.prov, "10.0.0.1:8080", expect(true)) {
		t.Errorf("source still blocked after its 2 s ban expired")
	}
	if bans, _ := tp.fw.Bans(); len(bans) != 0 {
		t.Errorf("Bans() after expiry = %v, want none", bans)
	}

	// A ban survives ruleset replacements.
	if err := b.Ban(context.Background(), peer, time.Minute); err != nil {
		t.Fatal(err)
	}
	r, _ := Render(mustConfig(t, "three-roles"))
	if _, err := tp.fw.Apply(r); err != nil {
		t.Fatal(err)
	}
	if bans, _ := tp.fw.Bans(); len(bans) != 1 || bans[0].Expires < 50*time.Second {
		t.Errorf("after replacing the ruleset Bans() = %v, want the ban carried over with its time", bans)
	}
	tc, _ := config.Parse(strings.NewReader(topoConfig))
	r, _ = Render(tc)
	if _, err := tp.fw.Apply(r); err != nil {
		t.Fatal(err)
	}
	if probe(t, tp.prov, "10.0.0.1:8080") {
		t.Fatal("banned source connects after the ruleset was replaced")
	}
	if err := tp.fw.Unban(peer); err != nil {
		t.Fatal(err)
	}
	if !probeFor(t, tp.prov, "10.0.0.1:8080", expect(true)) {
		t.Errorf("source still blocked after Unban")
	}
}

func TestBanWithoutFirewall(t *testing.T) {
	netnstest.Require(t, "nft")
	ns := netnstest.New(t, "kfw-n")
	if err := New(ns.Fd()).Ban(context.Background(), netip.MustParseAddr("192.0.2.1"), time.Second); !errors.Is(err, ErrNotActive) {
		t.Errorf("Ban without the kiln table = %v, want ErrNotActive", err)
	}
}

func TestMasquerade(t *testing.T) {
	tp := newTopo(t)
	// netconf turns forwarding on when masquerade is configured.
	if err := tp.kiln.Do(func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644) }); err != nil {
		t.Fatalf("enabling forwarding: %v", err)
	}
	seen := make(chan string, 4)
	var up net.Listener
	if err := tp.up.Do(func() (err error) { up, err = net.Listen("tcp", "203.0.113.1:7000"); return err }); err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			seen <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			c.Close()
		}
	}()
	// The allowed host goes out with kiln's upstream address.
	if !probeFor(t, tp.prov, "203.0.113.1:7000", expect(true)) {
		t.Fatal("allowed provisioning host 10.0.0.50 cannot reach the upstream through kiln")
	}
	if got := <-seen; got != "203.0.113.2" {
		t.Errorf("upstream saw source %s, want kiln's upstream address 203.0.113.2 (masquerade)", got)
	}
	// Another host on the same LAN is not allowed out.
	err := tp.prov.Do(func() error {
		d := net.Dialer{Timeout: 700 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: net.ParseIP("10.0.0.51")}}
		c, err := d.Dial("tcp", "203.0.113.1:7000")
		if err == nil {
			c.Close()
		}
		return err
	})
	if err == nil {
		t.Errorf("10.0.0.51 (not in firewall.masquerade.hosts) reached the upstream")
	}
	// The upstream cannot open connections into the provisioning LAN.
	tp.prov.Listen("10.0.0.50:7001")
	tp.up.IP("route", "add", "10.0.0.0/24", "via", "203.0.113.2")
	if probe(t, tp.up, "10.0.0.50:7001") {
		t.Errorf("upstream host opened a connection into the provisioning LAN")
	}

	// TFTP through the NAT: the server answers from a new port; the conntrack
	// helper relates it to the request.
	if _, err := exec.LookPath("atftp"); err != nil {
		t.Skip("needs atftp for the TFTP-through-NAT check")
	}
	dir := tftpServer(t, tp.up)
	if err := atftpGet(t, tp.prov, "203.0.113.1", dir); err != nil {
		t.Errorf("TFTP through masquerade: %v", err)
	}
}

func TestTFTPFromProvisioningPeer(t *testing.T) {
	tp := newTopo(t)
	if _, err := exec.LookPath("atftp"); err != nil {
		t.Skip("needs atftp (apt-get install atftp)")
	}
	dir := tftpServer(t, tp.kiln)
	if err := atftpGet(t, tp.prov, "10.0.0.1", dir); err != nil {
		t.Errorf("TFTP from the provisioning LAN: %v", err)
	}
	if err := atftpGet(t, tp.up, "203.0.113.2", dir); err == nil {
		t.Errorf("TFTP from the upstream succeeded, want it dropped")
	}
}

// ping sends one ICMP echo request from ns and waits up to 2 s for the reply.
func ping(ns *netnstest.NS, addr string) error {
	return ns.Do(func() error {
		c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return err
		}
		defer c.Close()
		msg := []byte{8, 0, 0, 0, 0x4b, 0x49, 0, 1, 'k', 'i', 'l', 'n'} // echo request, id "KI", seq 1
		var sum uint32
		for i := 0; i < len(msg); i += 2 {
			sum += uint32(msg[i])<<8 | uint32(msg[i+1])
		}
		sum = sum>>16 + sum&0xffff
		sum += sum >> 16
		msg[2], msg[3] = byte(^sum>>8), byte(^sum)
		if _, err := c.WriteTo(msg, &net.IPAddr{IP: net.ParseIP(addr)}); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return fmt.Errorf("no echo reply: %w", err)
			}
			if from.String() == addr && n >= 8 && buf[0] == 0 {
				return nil
			}
		}
	})
}

// tftpServer runs a TFTP server (pin/tftp, as the tftp service uses) inside
// ns as a copy of this test binary, serving a 3-block file; it returns the
// directory holding the file.
func tftpServer(t *testing.T, ns *netnstest.NS) string {
	dir := t.TempDir()
	payload := bytes.Repeat([]byte("kiln tftp\n"), 130) // 1300 bytes: three blocks
	os.WriteFile(filepath.Join(dir, "boot.bin"), payload, 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name, os.Args[0], "-test.run=^TestHelperTFTP$")
	cmd.Env = append(os.Environ(), "KILN_FW_TFTP_DIR="+dir)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "tftp ready" {
				ready <- true
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("TFTP helper did not start within 10s")
	}
	return dir
}

// atftpGet fetches boot.bin with the real atftp client from inside ns.
func atftpGet(t *testing.T, ns *netnstest.NS, server, dir string) error {
	local := filepath.Join(t.TempDir(), "got")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	out, err := ns.Exec(ctx, "atftp", "--tftp-timeout", "1", "-g", "-r", "boot.bin", "-l", local, server)
	if err != nil {
		return fmt.Errorf("atftp: %v\n%s", err, out)
	}
	got, _ := os.ReadFile(local)
	want, _ := os.ReadFile(filepath.Join(dir, "boot.bin"))
	if !bytes.Equal(got, want) {
		return fmt.Errorf("atftp got %d bytes, want %d\n%s", len(got), len(want), out)
	}
	return nil
}

// TestHelperTFTP is the TFTP server process of tftpServer.
func TestHelperTFTP(t *testing.T) {
	dir := os.Getenv("KILN_FW_TFTP_DIR")
	if dir == "" {
		t.Skip("only run by the TFTP tests")
	}
	s := tftp.NewServer(func(name string, rf io.ReaderFrom) error {
		f, err := os.Open(filepath.Join(dir, filepath.Base(name)))
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = rf.ReadFrom(f)
		return err
	}, nil)
	conn, err := net.ListenPacket("udp4", ":69")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("tftp ready")
	s.Serve(conn)
}
