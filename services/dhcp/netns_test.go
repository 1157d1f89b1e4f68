package dhcp

// Tier 3: kiln's DHCP server in one network namespace, real clients (udhcpc,
// dnsmasq as a neighbour server, a raw-socket Go client) in others, all joined
// by a bridge in a "lan" namespace. Needs root, ip(8), udhcpc and dnsmasq
// (Debian packages iproute2, udhcpc, dnsmasq).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"

	"kiln.dev/kiln/internal/syncbuf"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/internal/bootnonce"
	"kiln.dev/kiln/services/metrics"
	"kiln.dev/kiln/services/metrics/metricstest"
	"kiln.dev/kiln/services/store"
	"kiln.dev/kiln/services/svc"
)

// Helper process modes, selected by environment.
const (
	envServerConfig = "KILN_DHCP_TEST_CONFIG" // path: run the DHCP service with this config
	envServerState  = "KILN_DHCP_TEST_STATE"
	envClient       = "KILN_DHCP_TEST_CLIENT" // "proxy": run the PXE client below
	envRelay        = "KILN_DHCP_TEST_RELAY"  // "<server ip>": relay eth2's clients to that server
	envSpy          = "KILN_DHCP_TEST_SPY"    // "1": print every DHCP reply seen on eth1
)

// TestHelperSpy is not a test: another machine on the LAN, printing every
// packet to the DHCP client port its eth1 sees ("PKT <hex>").
func TestHelperSpy(t *testing.T) {
	if os.Getenv(envSpy) == "" {
		t.Skip("helper process for the netns tests")
	}
	conn, err := nclient4.NewRawUDPConn("eth1", dhcpv4.ClientPort)
	if err != nil {
		fmt.Println("SPY-ERROR:", err)
		os.Exit(3)
	}
	fmt.Println("SPY-READY")
	buf := make([]byte, 4096)
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			fmt.Println("SPY-ERROR:", err)
			os.Exit(3)
		}
		fmt.Println("PKT", hex.EncodeToString(buf[:n]))
	}
}

// TestHelperRelay is not a test: a minimal DHCP relay agent (RFC 3046) between
// clients on eth2 and the server given in the environment, reached via eth1.
// It sets giaddr to eth2's address and adds option 82 circuit-id "eth2".
func TestHelperRelay(t *testing.T) {
	server := os.Getenv(envRelay)
	if server == "" {
		t.Skip("helper process for the netns tests")
	}
	if err := relayRun(net.ParseIP(server)); err != nil {
		fmt.Fprintln(os.Stderr, "RELAY-ERROR:", err)
		os.Exit(3)
	}
}

func relayRun(server net.IP) error {
	gi, _, err := interfaceAddr("eth2", netip.MustParsePrefix("0.0.0.0/0"))
	if err != nil || !gi.IsValid() {
		return fmt.Errorf("eth2 address: %v", err)
	}
	clients, err := server4.NewIPv4UDPConn("eth2", &net.UDPAddr{Port: dhcpv4.ServerPort})
	if err != nil {
		return err
	}
	servers, err := server4.NewIPv4UDPConn("eth1", &net.UDPAddr{Port: dhcpv4.ServerPort})
	if err != nil {
		return err
	}
	fmt.Println("RELAY-READY")
	errc := make(chan error, 2)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := clients.ReadFrom(buf)
			if err != nil {
				errc <- err
				return
			}
			m, err := dhcpv4.FromBytes(buf[:n])
			if err != nil || m.OpCode != dhcpv4.OpcodeBootRequest {
				continue
			}
			m.GatewayIPAddr = gi.AsSlice()
			m.HopCount++
			m.UpdateOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte("eth2"))))
			servers.WriteTo(m.ToBytes(), &net.UDPAddr{IP: server, Port: dhcpv4.ServerPort})
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := servers.ReadFrom(buf)
			if err != nil {
				errc <- err
				return
			}
			m, err := dhcpv4.FromBytes(buf[:n])
			if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
				continue
			}
			m.Options.Del(dhcpv4.OptionRelayAgentInformation)
			clients.WriteTo(m.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort})
		}
	}()
	return <-errc
}

// TestHelperServer is not a test: the tier-3 tests run the test binary as the
// DHCP server process inside a namespace.
func TestHelperServer(t *testing.T) {
	path := os.Getenv(envServerConfig)
	if path == "" {
		t.Skip("helper process for the netns tests")
	}
	c, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "KILN-ERROR:", err)
		os.Exit(3)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "dhcp")
	// Metrics are served as kiln service does, on a socket in the state dir.
	reg := metrics.New()
	go metrics.ServeUnix(ctx, reg, metrics.SocketPath(os.Getenv(envServerState), "dhcp"), log)
	err = Run(ctx, svc.Env{Config: c, StateDir: os.Getenv(envServerState), Logger: log, Metrics: reg,
		Ready: func() { fmt.Println("KILN-READY") }})
	if err != nil {
		fmt.Fprintln(os.Stderr, "KILN-ERROR:", err)
		os.Exit(3)
	}
}

// TestHelperClient is not a test: a PXE client (x86-64 UEFI) that prints every
// OFFER it gets, then takes the address offer and asks the proxy offer's
// server on port 4011, printing the ACK.
func TestHelperClient(t *testing.T) {
	if os.Getenv(envClient) == "" {
		t.Skip("helper process for the netns tests")
	}
	if err := pxeClientRun(); err != nil {
		fmt.Println("CLIENT-ERROR:", err)
		os.Exit(3)
	}
}

func pxeClientRun() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ifi, err := net.InterfaceByName("eth1")
	if err != nil {
		return err
	}
	pxe := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
	}
	conn, err := nclient4.NewRawUDPConn("eth1", dhcpv4.ClientPort)
	if err != nil {
		return err
	}
	offers, err := discoverOffers(ctx, conn, ifi.HardwareAddr, 5*time.Second, pxe...)
	conn.Close()
	if err != nil {
		return err
	}
	var addr, proxy *dhcpv4.DHCPv4
	for _, o := range offers {
		fmt.Printf("OFFER server=%s yiaddr=%s file=%s vendor=%s\n", o.ServerIdentifier(), o.YourIPAddr, o.BootFileName, o.ClassIdentifier())
		if o.YourIPAddr.IsUnspecified() {
			proxy = o
		} else {
			addr = o
		}
	}
	if addr == nil || proxy == nil {
		return fmt.Errorf("want an address offer and a proxy offer, got %d offers", len(offers))
	}
	if out, err := exec.CommandContext(ctx, "ip", "addr", "add", addr.YourIPAddr.String()+"/24", "dev", "eth1").CombinedOutput(); err != nil {
		return fmt.Errorf("ip addr add: %v: %s", err, out)
	}
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: addr.YourIPAddr, Port: dhcpv4.ClientPort})
	if err != nil {
		return err
	}
	defer udp.Close()
	req, err := dhcpv4.New(append(pxe, dhcpv4.WithHwAddr(ifi.HardwareAddr), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(addr.YourIPAddr))...)
	if err != nil {
		return err
	}
	to := &net.UDPAddr{IP: proxy.ServerIdentifier(), Port: pxePort}
	if _, err := udp.WriteTo(req.ToBytes(), to); err != nil {
		return err
	}
	udp.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, from, err := udp.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("no answer from %s: %w", to, err)
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || m.TransactionID != req.TransactionID {
			continue
		}
		fmt.Printf("ACK4011 from=%s type=%s file=%s vendor=%s\n", from, m.MessageType(), m.BootFileName, m.ClassIdentifier())
		return nil
	}
}

// lab is a set of network namespaces on one bridge.
type lab struct {
	t   *testing.T
	id  string
	lan string // namespace holding the bridge
	// mu guards nss.
	mu  sync.Mutex
	nss []string
}

func requireLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("tier 3 netns test: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("tier 3 netns test: needs root to create network namespaces")
	}
	for _, tool := range []string{"ip", "udhcpc", "dnsmasq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("tier 3 netns test: %s not installed (apt-get install -y iproute2 udhcpc dnsmasq)", tool)
		}
	}
}

func newLab(t *testing.T) *lab {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	l := &lab{t: t, id: hex.EncodeToString(b)}
	t.Cleanup(l.close)
	l.lan = l.netns("lan")
	l.ip("-n", l.lan, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
	l.ip("-n", l.lan, "link", "set", "br0", "up")
	return l
}

func (l *lab) ip(args ...string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (l *lab) netns(name string) string {
	l.t.Helper()
	ns := fmt.Sprintf("kiln-t-%s-%s", l.id, name)
	l.ip("netns", "add", ns)
	l.mu.Lock()
	l.nss = append(l.nss, ns)
	l.mu.Unlock()
	l.ip("-n", ns, "link", "set", "lo", "up")
	return ns
}

// node adds a namespace whose eth1 is plugged into the bridge.
func (l *lab) node(name, mac, cidr string) string {
	l.t.Helper()
	ns := l.netns(name)
	port := "p-" + name
	l.ip("-n", l.lan, "link", "add", port, "type", "veth", "peer", "name", "eth1", "netns", ns)
	l.ip("-n", l.lan, "link", "set", port, "master", "br0", "up")
	if mac != "" {
		l.ip("-n", ns, "link", "set", "eth1", "address", mac)
	}
	if cidr != "" {
		l.ip("-n", ns, "addr", "add", cidr, "dev", "eth1")
	}
	l.ip("-n", ns, "link", "set", "eth1", "up")
	return ns
}

func (l *lab) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.nss) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "del", l.nss[i]).CombinedOutput(); err != nil {
			l.t.Logf("cleanup: ip netns del %s: %v %s", l.nss[i], err, out)
		}
	}
}

// proc is a process running in a namespace, stopped at test cleanup.
type proc struct {
	cmd    *exec.Cmd
	lines  chan string // stdout lines
	stderr *syncbuf.Buffer
	done   chan struct{}
}

func start(t *testing.T, ns string, env []string, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{cmd: cmd, lines: make(chan string, 100), stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s in %s: %v", name, ns, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop sends SIGTERM and waits up to 10 s before killing.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Logf("process %v ignored SIGTERM for 10s; killing it", p.cmd.Args)
		p.cmd.Process.Kill()
		<-p.done
	}
}

// waitLine waits for a stdout line containing want, the process's exit, or the timeout.
func (p *proc) waitLine(want string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case l := <-p.lines:
			if strings.Contains(l, want) {
				return l, nil
			}
		case <-p.done:
			return "", fmt.Errorf("process exited before printing %q; stderr:\n%s", want, p.stderr.String())
		case <-deadline:
			return "", fmt.Errorf("no %q within %s; stderr:\n%s", want, timeout, p.stderr.String())
		}
	}
}

// startKiln runs the DHCP service (this test binary in helper mode) in ns.
func startKiln(t *testing.T, ns, cfg, state string) *proc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kiln.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var p *proc
	// Registered before start's stop, so it runs after the process ended.
	t.Cleanup(func() {
		if p != nil && strings.Contains(p.stderr.String(), "DATA RACE") {
			t.Errorf("the DHCP server process (built with -race) reported a data race:\n%s", p.stderr.String())
		}
	})
	p = start(t, ns, []string{envServerConfig + "=" + path, envServerState + "=" + state}, exe, "-test.run=^TestHelperServer$")
	return p
}

func startKilnReady(t *testing.T, ns, cfg, state string) *proc {
	t.Helper()
	p := startKiln(t, ns, cfg, state)
	if _, err := p.waitLine("KILN-READY", 20*time.Second); err != nil {
		t.Fatalf("kiln DHCP did not become ready: %v", err)
	}
	return p
}

// udhcpc runs one udhcpc exchange in ns and returns the variables its script
// got on "bound".
func udhcpc(t *testing.T, ns string, args ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] || exit 0\nenv > "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmdArgs := append([]string{"netns", "exec", ns, "udhcpc", "-i", "eth1", "-f", "-q", "-n", "-t", "5", "-T", "2", "-s", script}, args...)
	cmdOut, err := exec.CommandContext(ctx, "ip", cmdArgs...).CombinedOutput()
	if err != nil {
		t.Fatalf("udhcpc %v: %v\n%s", args, err, cmdOut)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("udhcpc %v: no lease: %v\n%s", args, err, cmdOut)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	return vars
}

func checkVars(t *testing.T, what string, got map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: udhcpc %s = %q, want %q", what, k, got[k], v)
		}
	}
}

const authoritativeConfig = `
provisioning:
  domain: hall.test
  subnets:
    - name: hall-a
      interface: eth1
      cidr: 10.77.0.0/24
      mode: authoritative
      pool: {start: 10.77.0.100, end: 10.77.0.150}
      router: 10.77.0.254
      dns: [10.77.0.1]
      ntp: [10.77.0.1]
      mtu: 1500
      lease_time: 1h
      foreign_dhcp: %s
`

func TestNetnsAuthoritative(t *testing.T) {
	requireLab(t)
	l := newLab(t)
	srv := l.node("kiln", "", "10.77.0.1/24")
	cli := l.node("cli", "52:54:00:00:07:07", "")
	l.node("squat", "02:00:00:00:01:01", "10.77.0.101/24") // a machine already using a pool address
	spyNS := l.node("spy", "02:00:00:00:02:02", "10.77.0.9/24")
	state := t.TempDir()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Path(state))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pc07, err := db.CreateHost(ctx, store.Host{Name: "pc-07", MACs: []string{"52:54:00:00:07:07"}, IPv4: netip.MustParseAddr("10.77.0.7"), BootProfile: store.BootVet})
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(authoritativeConfig, "refuse")
	kiln := startKilnReady(t, srv, cfg, state)

	// A reserved MAC gets its address and the subnet's options.
	checkVars(t, "reserved", udhcpc(t, cli), map[string]string{
		"ip": "10.77.0.7", "subnet": "255.255.255.0", "router": "10.77.0.254", "dns": "10.77.0.1",
		"domain": "hall.test", "hostname": "pc-07", "serverid": "10.77.0.1", "lease": "3600", "mtu": "1500", "ntpsrv": "10.77.0.1",
	})

	// The same machine as iPXE: another machine on the LAN sees its
	// broadcast OFFER and ACK, which hold the script URL with a nonce
	// bound to this exchange and address — never the host's token — that
	// serves once, and only from the machine's address.
	checkIPXEReplies(t, startSpy(t, spyNS), udhcpc(t, cli, "-x", "0x4d:69505845"), state, pc07)

	// An unknown PXE client (x86-64 UEFI) gets a pool address and a boot file,
	// and becomes a host.
	l.ip("-n", cli, "link", "set", "eth1", "address", "52:54:00:00:aa:01")
	pxe := []string{"-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007"}
	checkVars(t, "unknown PXE client", udhcpc(t, cli, pxe...), map[string]string{
		"ip": "10.77.0.100", "boot_file": "ipxe.efi", "siaddr": "10.77.0.1", "router": "10.77.0.254",
	})
	h, err := db.HostByMAC(ctx, "52:54:00:00:aa:01")
	if err != nil || h.Name != "unknown-52540000aa01" {
		t.Errorf("HostByMAC(unknown client) = %q, %v, want enrolled host unknown-52540000aa01", h.Name, err)
	}
	evs, _ := db.BootEvents(ctx, "52:54:00:00:aa:01", 10)
	if len(evs) < 2 || evs[0].Kind != store.EventDHCPAck || !strings.Contains(evs[0].Detail, "file=ipxe.efi") {
		t.Errorf("BootEvents(unknown client) = %+v, want dhcp_ack with file=ipxe.efi", evs)
	}

	// The next client skips 10.77.0.101, which answers ARP.
	l.ip("-n", cli, "link", "set", "eth1", "address", "52:54:00:00:aa:02")
	checkVars(t, "conflict", udhcpc(t, cli), map[string]string{"ip": "10.77.0.102"})

	// The exchanges so far show in the metrics, scraped as mgmt does.
	checkNetnsMetrics(t, state)

	// Restart: leases survive, so a new client does not get .100 or .102.
	kiln.stop(t)
	startKilnReady(t, srv, cfg, state)
	l.ip("-n", cli, "link", "set", "eth1", "address", "52:54:00:00:aa:03")
	checkVars(t, "after restart, new client", udhcpc(t, cli), map[string]string{"ip": "10.77.0.103"})
	l.ip("-n", cli, "link", "set", "eth1", "address", "52:54:00:00:aa:01")
	checkVars(t, "after restart, old client", udhcpc(t, cli), map[string]string{"ip": "10.77.0.100"})
}

// startSpy runs TestHelperSpy in ns.
func startSpy(t *testing.T, ns string) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, ns, []string{envSpy + "=1"}, exe, "-test.run=^TestHelperSpy$")
	if _, err := p.waitLine("SPY-READY", 10*time.Second); err != nil {
		t.Fatalf("spy: %v", err)
	}
	return p
}

// checkIPXEReplies reads the OFFER and ACK to h's MAC the spy saw, and
// checks what the iPXE client (udhcpc's vars) got: no token of h in either
// packet; the script URL's nonce, under the key in state, bound to the
// exchange's xid and h's reserved address; refused from the spy's address,
// served once from h's.
func checkIPXEReplies(t *testing.T, spy *proc, vars map[string]string, state string, h store.Host) {
	t.Helper()
	mac, _ := net.ParseMAC(h.MACs[0])
	script := "http://10.77.0.1:8080/boot/" + strings.ReplaceAll(h.MACs[0], ":", "-") + ".ipxe?nonce="
	seen := map[dhcpv4.MessageType]*dhcpv4.DHCPv4{}
	for len(seen) < 2 {
		line, err := spy.waitLine("PKT ", 10*time.Second)
		if err != nil {
			t.Fatalf("the spy saw %d of the OFFER and ACK to %s: %v", len(seen), mac, err)
		}
		raw, err := hex.DecodeString(strings.TrimPrefix(line, "PKT "))
		if err != nil {
			t.Fatal(err)
		}
		m, err := dhcpv4.FromBytes(raw)
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply || m.ClientHWAddr.String() != mac.String() {
			continue
		}
		if bytes.Contains(raw, []byte(h.Token)) {
			t.Errorf("the %s to %s seen on the LAN holds the host's token:\n%s", m.MessageType(), mac, m.Summary())
		}
		seen[m.MessageType()] = m
	}
	key, err := bootnonce.LoadKey(filepath.Join(state, store.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	r := bootnonce.NewRedeemer(key, 0, time.Now().Add(-time.Minute))
	for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck} {
		m := seen[mt]
		if m == nil {
			t.Fatalf("the spy saw no %s to %s", mt, mac)
		}
		nonce, ok := strings.CutPrefix(m.BootFileNameOption(), script)
		if !ok {
			t.Fatalf("%s boot file = %q, want %s<nonce>", mt, m.BootFileNameOption(), script)
		}
		tk, err := key.Open(nonce, mac)
		if err != nil || tk.XID != m.TransactionID || tk.Addr != h.IPv4 {
			t.Errorf("%s nonce = %v, %v, want one for xid %x and %s", mt, tk, err, m.TransactionID, h.IPv4)
		}
	}
	nonce, ok := strings.CutPrefix(vars["boot_file"], script)
	if !ok {
		t.Fatalf("the iPXE client's boot_file = %q, want %s<nonce>", vars["boot_file"], script)
	}
	now := time.Now()
	if _, err := r.Redeem(nonce, mac, netip.MustParseAddr("10.77.0.9"), now); !errors.Is(err, bootnonce.ErrOtherAddress) {
		t.Errorf("the spy redeeming the nonce from its address: %v, want %v", err, bootnonce.ErrOtherAddress)
	}
	if _, err := r.Redeem(nonce, mac, h.IPv4, now); err != nil {
		t.Errorf("the machine redeeming its nonce: %v", err)
	}
	if _, err := r.Redeem(nonce, mac, h.IPv4, now); !errors.Is(err, bootnonce.ErrUsed) {
		t.Errorf("the nonce redeemed again: %v, want %v", err, bootnonce.ErrUsed)
	}
}

func TestNetnsForeignServer(t *testing.T) {
	requireLab(t)
	l := newLab(t)
	srv := l.node("kiln", "", "10.77.0.1/24")
	other := l.node("other", "", "10.77.0.2/24")
	startDnsmasq(t, other, "10.77.0.50,10.77.0.60,255.255.255.0,1h")

	p := startKiln(t, srv, fmt.Sprintf(authoritativeConfig, "refuse"), t.TempDir())
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("kiln kept running beside another DHCP server with foreign_dhcp: refuse")
	}
	msg := p.stderr.String()
	for _, want := range []string{"KILN-ERROR", "10.77.0.2", "provisioning.subnets[0].mode: proxy", "foreign_dhcp: warn"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal message lacks %q:\n%s", want, msg)
		}
	}
	t.Logf("refusal (expected):\n%s", msg)
	// warn: serves anyway.
	startKilnReady(t, srv, fmt.Sprintf(authoritativeConfig, "warn"), t.TempDir())
}

func startDnsmasq(t *testing.T, ns, dhcpRange string) *proc {
	t.Helper()
	dir := t.TempDir()
	p := start(t, ns, nil, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
		"--interface=eth1", "--bind-interfaces", "--dhcp-range="+dhcpRange, "--dhcp-leasefile="+filepath.Join(dir, "leases"),
		"--pid-file="+filepath.Join(dir, "pid"), "--log-dhcp")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.stderr.String(), "DHCP, IP range") {
		select {
		case <-p.done:
			t.Fatalf("dnsmasq exited: %s", p.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq not up within 10s: %s", p.stderr.String())
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dnsmasq log:\n%s", p.stderr.String())
		}
	})
	return p
}

func TestNetnsProxy(t *testing.T) {
	requireLab(t)
	l := newLab(t)
	srv := l.node("kiln", "", "10.77.0.1/24")
	other := l.node("other", "", "10.77.0.2/24")
	cli := l.node("cli", "52:54:00:00:bb:01", "")
	startDnsmasq(t, other, "10.77.0.50,10.77.0.60,255.255.255.0,1h")
	kiln := startKilnReady(t, srv, `
provisioning:
  subnets:
    - name: office
      interface: eth1
      cidr: 10.77.0.0/24
      mode: proxy
      boot: {http_base: "http://10.77.0.1:8080"}
`, t.TempDir())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kiln log:\n%s", kiln.stderr.String())
		}
	})

	// An ordinary client: address from dnsmasq, nothing from kiln.
	checkVars(t, "plain client", udhcpc(t, cli), map[string]string{"serverid": "10.77.0.2", "boot_file": ""})

	// A PXE client sees both offers: the address from dnsmasq, the boot file
	// from kiln, and gets the boot file again from kiln's port 4011.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	l.ip("-n", cli, "link", "set", "eth1", "address", "52:54:00:00:bb:02")
	c := start(t, cli, []string{envClient + "=proxy"}, exe, "-test.run=^TestHelperClient$")
	var lines []string
	for {
		line, err := c.waitLine("", 20*time.Second)
		if err != nil {
			break
		}
		lines = append(lines, line)
		if strings.HasPrefix(line, "ACK4011") || strings.HasPrefix(line, "CLIENT-ERROR") {
			break
		}
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		"OFFER server=10.77.0.2 yiaddr=10.77.0.5",                              // dnsmasq's address offer (.50-.60)
		"OFFER server=10.77.0.1 yiaddr=0.0.0.0 file=ipxe.efi vendor=PXEClient", // kiln's proxy offer
		"ACK4011 from=10.77.0.1:4011 type=ACK file=ipxe.efi vendor=PXEClient",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("PXE client output lacks %q:\n%s\nstderr: %s", want, got, c.stderr.String())
		}
	}
}

func TestNetnsRelay(t *testing.T) {
	requireLab(t)
	l := newLab(t)
	srv := l.node("kiln", "", "10.77.0.1/24")
	router := l.node("router", "", "10.77.0.254/24")
	l.ip("-n", srv, "route", "add", "10.78.0.0/24", "via", "10.77.0.254")
	// The clients' LAN: router eth2 <-> client eth1, a plain veth pair.
	cli := l.netns("cli")
	l.ip("-n", router, "link", "add", "eth2", "type", "veth", "peer", "name", "eth1", "netns", cli)
	l.ip("-n", router, "addr", "add", "10.78.0.1/24", "dev", "eth2")
	l.ip("-n", router, "link", "set", "eth2", "up")
	l.ip("-n", cli, "link", "set", "eth1", "address", "52:54:00:00:cc:01")
	l.ip("-n", cli, "link", "set", "eth1", "up")
	if out, err := exec.Command("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("sysctl: %v %s", err, out)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	relay := start(t, router, []string{envRelay + "=10.77.0.1"}, exe, "-test.run=^TestHelperRelay$")
	if _, err := relay.waitLine("RELAY-READY", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Path(state))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kiln := startKilnReady(t, srv, `
provisioning:
  subnets:
    - name: remote
      cidr: 10.78.0.0/24
      mode: authoritative
      pool: {start: 10.78.0.100, end: 10.78.0.150}
      router: 10.78.0.1
`, state)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kiln log:\n%s\nrelay log:\n%s", kiln.stderr.String(), relay.stderr.String())
		}
	})
	checkVars(t, "relayed client", udhcpc(t, cli), map[string]string{
		"ip": "10.78.0.100", "router": "10.78.0.1", "serverid": "10.77.0.1", "subnet": "255.255.255.0"})
	if l, err := db.LeaseByMAC(ctx, "remote", "52:54:00:00:cc:01"); err != nil || l.RelayInfo != "circuit-id=eth2" {
		t.Errorf("relayed lease = %+v, %v, want relay info circuit-id=eth2", l, err)
	}
	// The switch port identifies a machine whose MAC kiln has never seen.
	if _, err := db.CreateHost(ctx, store.Host{Name: "rack1-u1", CircuitID: "eth2", IPv4: netip.MustParseAddr("10.78.0.42")}); err != nil {
		t.Fatal(err)
	}
	l.ip("-n", cli, "link", "set", "eth1", "address", "52:54:00:00:cc:02")
	checkVars(t, "option 82 match", udhcpc(t, cli), map[string]string{"ip": "10.78.0.42", "hostname": "rack1-u1"})
}

// checkNetnsMetrics scrapes the DHCP service of TestNetnsAuthoritative
// through a Gatherer and checks what its three udhcpc exchanges counted.
func checkNetnsMetrics(t *testing.T, state string) {
	t.Helper()
	g := &metrics.Gatherer{Dir: metrics.SocketDir(state), Timeout: 5 * time.Second}
	var b bytes.Buffer
	g.WriteText(context.Background(), &b)
	fams := metricstest.Parse(t, b.Bytes())
	for _, c := range []struct {
		fam     string
		labels  []string
		atLeast float64
	}{
		{metrics.SourceUpFamily, []string{"source", "dhcp"}, 1},
		{"kiln_dhcp_requests_total", []string{"subnet", "hall-a", "type", "discover"}, 3},
		{"kiln_dhcp_requests_total", []string{"subnet", "hall-a", "type", "request"}, 3},
		{"kiln_dhcp_replies_total", []string{"subnet", "hall-a", "type", "offer"}, 3},
		{"kiln_dhcp_replies_total", []string{"subnet", "hall-a", "type", "ack"}, 3},
		{"kiln_dhcp_pool_addresses", []string{"subnet", "hall-a"}, 51},
		{"kiln_dhcp_pool_leases", []string{"subnet", "hall-a", "state", "bound"}, 2},
	} {
		// Retransmissions may add to the counts; NaN (no series) fails.
		if got := fams.Value(c.fam, c.labels...); !(got >= c.atLeast) {
			t.Errorf("%s%v = %v, want at least %v\n%s", c.fam, c.labels, got, c.atLeast, b.String())
		}
	}
}
