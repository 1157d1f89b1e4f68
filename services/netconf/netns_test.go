package netconf

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/firewall"
	"kiln.dev/kiln/services/internal/netnstest"
	"kiln.dev/kiln/services/svc"
)

// Tier 3: real links, addresses, routes and nf_tables in namespaces the
// tests create.
//
//	mgmt peer eth0 192.168.1.2  ── nic1 (52:54:00:aa:00:01) → mgmt0 192.168.1.10
//	prov peer eth0 (vlan 20)    ── nic2 (trunk) → prov20 10.20.0.1 (vlan 20)
//	prov peer eth0 (vlan 30)    ──              → br0 over vlan 30, 10.30.0.1
//	up peer   eth0 203.0.113.1  ── up0 (DHCP)
//
// Without 802.1Q in the kernel (some CI kernels lack it) nic2 itself becomes
// prov20 and br0 bridges a third veth (nic3); VLANs are then covered by the
// tier-1 plans and the image test only.
const nsConfigVLAN = `
management: {https_port: 8443, http_port: 0}
network:
  interfaces:
    - {name: mgmt0, mac: "52:54:00:aa:00:01", role: management, mtu: 1400, addresses: [192.168.1.10/24, "fd00:1::10/64"]}
    - {name: trunk, mac: "52:54:00:aa:00:02"}
    - {name: prov20, kind: vlan, parent: trunk, vlan: 20, role: provisioning, addresses: [10.20.0.1/24]}
    - {name: vl30, kind: vlan, parent: trunk, vlan: 30}
    - {name: br0, kind: bridge, members: [vl30], role: provisioning, addresses: [10.30.0.1/24]}
  routes:
    - {to: 172.16.0.0/12, via: 192.168.1.1}
    - {to: "fd00:99::/64", via: "fd00:1::1", interface: mgmt0}
  resolver: {nameservers: [192.0.2.53], search: [hall.example]}
`

const nsConfigFlat = `
management: {https_port: 8443, http_port: 0}
network:
  interfaces:
    - {name: mgmt0, mac: "52:54:00:aa:00:01", role: management, mtu: 1400, addresses: [192.168.1.10/24, "fd00:1::10/64"]}
    - {name: prov20, mac: "52:54:00:aa:00:02", role: provisioning, addresses: [10.20.0.1/24]}
    - {name: nic3}
    - {name: br0, kind: bridge, members: [nic3], role: provisioning, addresses: [10.30.0.1/24]}
  routes:
    - {to: 172.16.0.0/12, via: 192.168.1.1}
    - {to: "fd00:99::/64", via: "fd00:1::1", interface: mgmt0}
  resolver: {nameservers: [192.0.2.53], search: [hall.example]}
`

type nsTopo struct {
	kiln, mgmt, prov, up *netnstest.NS
	sys                  *System
	fw                   *firewall.Firewall
	resolv               string
	// config is nsConfigVLAN or nsConfigFlat.
	config string
}

func newNSTopo(t *testing.T) *nsTopo {
	netnstest.Require(t, "nft")
	tp := &nsTopo{
		kiln: netnstest.New(t, "knc-k"),
		mgmt: netnstest.New(t, "knc-m"),
		prov: netnstest.New(t, "knc-p"),
		up:   netnstest.New(t, "knc-u"),
	}
	netnstest.Veth(t, tp.kiln, "nic1", tp.mgmt, "eth0")
	netnstest.Veth(t, tp.kiln, "nic2", tp.prov, "eth0")
	netnstest.Veth(t, tp.kiln, "up0", tp.up, "eth0")
	tp.kiln.IP("link", "set", "nic1", "address", "52:54:00:aa:00:01")
	tp.kiln.IP("link", "set", "nic2", "address", "52:54:00:aa:00:02")
	tp.mgmt.IP("addr", "add", "192.168.1.2/24", "dev", "eth0")
	if _, err := tp.prov.Exec(context.Background(), "ip", "link", "add", "link", "eth0", "name", "v20", "type", "vlan", "id", "20"); err == nil {
		tp.config = nsConfigVLAN
		tp.prov.IP("addr", "add", "10.20.0.50/24", "dev", "v20")
		tp.prov.IP("link", "set", "v20", "up")
		tp.prov.IP("link", "add", "link", "eth0", "name", "v30", "type", "vlan", "id", "30")
		tp.prov.IP("addr", "add", "10.30.0.50/24", "dev", "v30")
		tp.prov.IP("link", "set", "v30", "up")
	} else {
		t.Log("the kernel has no 802.1Q VLAN support: testing without VLANs (tier-1 plans and the image test cover them)")
		tp.config = nsConfigFlat
		tp.prov.IP("addr", "add", "10.20.0.50/24", "dev", "eth0")
		netnstest.Veth(t, tp.kiln, "nic3", tp.prov, "eth1")
		tp.prov.IP("addr", "add", "10.30.0.50/24", "dev", "eth1")
	}
	tp.up.IP("addr", "add", "203.0.113.1/24", "dev", "eth0")
	sys, err := OpenSystem(tp.kiln.Handle())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Close)
	tp.sys = sys
	tp.fw = firewall.New(tp.kiln.Fd())
	tp.resolv = filepath.Join(t.TempDir(), "resolv.conf")
	return tp
}

func (tp *nsTopo) manager(t *testing.T, ctx context.Context) *Manager {
	return NewManager(ctx, ManagerOptions{System: tp.sys, Firewall: tp.fw, ResolvConf: tp.resolv, Hostname: "kiln-test", Logger: testLogger(t)})
}

func testLogger(t *testing.T) *slog.Logger {
	return testlog.New(t, slog.LevelDebug).With("component", "netconf")
}

func parse(t *testing.T, yaml string) config.Config {
	t.Helper()
	c, err := config.Parse(strings.NewReader(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// snapshot is everything an apply may change, as the real tools print it.
func (tp *nsTopo) snapshot(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{{"-d", "-o", "link"}, {"-o", "addr"}, {"route"}, {"-6", "route"}} {
		for _, l := range strings.SplitAfter(tp.kiln.IP(args...), "\n") {
			// ip(8) says this on stderr when another test's namespace
			// vanishes while it resolves a veth peer: not a change here.
			if !strings.HasPrefix(l, "Error: Peer netns reference is invalid.") {
				b.WriteString(l)
			}
		}
	}
	out, err := tp.kiln.Exec(context.Background(), "nft", "list", "ruleset")
	if err != nil {
		t.Fatalf("nft list ruleset: %v\n%s", err, out)
	}
	b.WriteString(out)
	// Not state kiln sets: lifetimes counting down, bridge timers, carrier
	// and operstate settling, the kernel's link-local addresses in DAD.
	timers := regexp.MustCompile(`\w+_timer\s+[\d.]+|NO-CARRIER,|,LOWER_UP| state [A-Z]+ | state (disabled|listening|learning|forwarding|blocking) `)
	var lines []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, "fe80::") {
			continue
		}
		if i := strings.Index(l, "valid_lft"); i >= 0 {
			l = l[:i]
		}
		lines = append(lines, timers.ReplaceAllString(l, ""))
	}
	return strings.Join(lines, "\n")
}

func TestApplyTwiceIsNoop(t *testing.T) {
	tp := newNSTopo(t)
	ctx := t.Context()
	m := tp.manager(t, ctx)
	c := parse(t, tp.config)
	res, err := m.Apply(ctx, c)
	if err != nil {
		t.Fatalf("first Apply: %v\nplan:\n%s", err, res.Plan)
	}
	if len(res.Plan) == 0 || !res.FirewallChanged {
		t.Fatalf("first Apply = %+v, want steps and a firewall", res)
	}
	t.Logf("first plan:\n%s", res.Plan)
	before := tp.snapshot(t)
	wants := []string{"mgmt0", "mtu 1400", "192.168.1.10/24", "fd00:1::10/64", "10.20.0.1/24", "10.30.0.1/24", "master br0", "172.16.0.0/12 via 192.168.1.1 dev mgmt0 proto 77", "fd00:99::/64 via fd00:1::1 dev mgmt0 proto 77",
		"table inet kiln", `iifname "prov20" jump provisioning`}
	if tp.config == nsConfigVLAN {
		wants = append(wants, "prov20@trunk", "vlan protocol 802.1Q id 20")
	}
	for _, want := range wants {
		if !strings.Contains(before, want) {
			t.Errorf("after Apply the namespace lacks %q:\n%s", want, before)
		}
	}
	res, err = m.Apply(ctx, c)
	if err != nil || !res.Empty() {
		t.Errorf("second Apply = %q (firewall changed %v), %v; want an empty plan", res.Plan.String(), res.FirewallChanged, err)
	}
	if after := tp.snapshot(t); after != before {
		t.Errorf("second Apply changed the namespace:\n%s", cmp.Diff(before, after))
	}
	b, _ := os.ReadFile(tp.resolv)
	if want := "search hall.example\nnameserver 192.0.2.53\n"; !strings.Contains(string(b), want) {
		t.Errorf("resolv.conf = %q, want it to contain %q", b, want)
	}

	// The peers reach kiln through the configured links (and the firewall).
	tp.kiln.Listen(":8443")
	tp.kiln.Listen(":8080")
	for _, tt := range []struct {
		from *netnstest.NS
		addr string
		want bool
	}{
		{tp.mgmt, "192.168.1.10:8443", true},
		{tp.mgmt, "192.168.1.10:8080", false},
		{tp.prov, "10.20.0.1:8080", true},
		{tp.prov, "10.30.0.1:8080", true},
		{tp.prov, "10.20.0.1:8443", false},
	} {
		timeout := 700 * time.Millisecond // a drop is a timeout
		if tt.want {
			timeout = 3 * time.Second
		}
		c, err := tt.from.Dial("tcp", tt.addr, timeout)
		if c != nil {
			c.Close()
		}
		if got := err == nil; got != tt.want {
			t.Errorf("connect %s → %s = %v (%v), want %v", tt.from.Name, tt.addr, got, err, tt.want)
		}
	}

	st, err := m.Status()
	if err != nil {
		t.Fatal(err)
	}
	var mgmt *LinkStatus
	for i := range st.Links {
		if st.Links[i].Name == "mgmt0" {
			mgmt = &st.Links[i]
		}
	}
	if mgmt == nil || mgmt.Role != "management" || !mgmt.Carrier || mgmt.State != "up" || mgmt.MTU != 1400 ||
		!strings.Contains(strings.Join(mgmt.Addresses, " "), "192.168.1.10/24") || st.Firewall.Ruleset == "" {
		t.Errorf("Status() mgmt0 = %+v, firewall %+v; want role management, carrier, up, mtu 1400, 192.168.1.10/24 and a ruleset", mgmt, st.Firewall)
	}
	want, err := firewall.Render(parse(t, tp.config))
	if err != nil {
		t.Fatal(err)
	}
	if st.Firewall.Ruleset != want.Hash() || st.Firewall.Text != want.Text() {
		t.Errorf("Status().Firewall = %s\n%s\nwant the config's ruleset %s:\n%s", st.Firewall.Ruleset, st.Firewall.Text, want.Hash(), want.Text())
	}
}

func TestApplyUnknownMACChangesNothing(t *testing.T) {
	tp := newNSTopo(t)
	ctx := t.Context()
	m := tp.manager(t, ctx)
	if _, err := m.Apply(ctx, parse(t, tp.config)); err != nil {
		t.Fatal(err)
	}
	before := tp.snapshot(t)
	bad := strings.Replace(tp.config, "52:54:00:aa:00:02", "52:54:00:aa:00:99", 1)
	_, err := m.Apply(ctx, parse(t, bad))
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "network.interfaces[1].mac" {
		t.Fatalf("Apply(unknown MAC) = %v, want a FieldError for network.interfaces[1].mac", err)
	}
	if after := tp.snapshot(t); after != before {
		t.Errorf("a refused Apply changed the namespace:\n%s", cmp.Diff(before, after))
	}

	// A config without interfaces after a managed one: kiln's links, routes
	// and firewall go; the NICs keep their names.
	if _, err := m.Apply(ctx, config.Default()); err != nil {
		t.Fatalf("Apply(default) = %v", err)
	}
	snap := tp.snapshot(t)
	for _, gone := range []string{"br0", "proto 77", "table inet kiln"} {
		if strings.Contains(snap, gone) {
			t.Errorf("after Apply(default) %q is still there:\n%s", gone, snap)
		}
	}
	if !strings.Contains(snap, "mgmt0") {
		t.Errorf("after Apply(default) mgmt0 is gone:\n%s", snap)
	}
}

// TestServiceRepairsAndTries runs the service loop on the namespace: it
// repairs drift on link events, answers status, and a try reverts unless
// confirmed.
func TestServiceRepairsAndTries(t *testing.T) {
	tp := newNSTopo(t)
	ctx, cancel := context.WithCancel(t.Context())
	run := t.TempDir()
	ready := make(chan struct{})
	env := svc.Env{Config: parse(t, tp.config), StateDir: t.TempDir(), RunDir: run, Logger: testLogger(t), Ready: func() { close(ready) }}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, env, tp.sys, tp.fw, tp.resolv, env.Logger) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("netconf not ready within 10s")
	}
	waitFor := func(what string, d time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s:\n%s", what, d, tp.kiln.IP("addr"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	hasAddr := func(a string) func() bool {
		return func() bool { return strings.Contains(tp.kiln.IP("-o", "addr", "show", "dev", "mgmt0"), a) }
	}
	waitFor("192.168.1.10 on mgmt0", 5*time.Second, hasAddr("192.168.1.10/24"))

	// Drift: an address removed by hand comes back.
	tp.kiln.IP("addr", "del", "192.168.1.10/24", "dev", "mgmt0")
	waitFor("192.168.1.10 restored after ip addr del", 5*time.Second, hasAddr("192.168.1.10/24"))

	cl := NewClient(filepath.Join(run, SocketName))
	st, err := cl.Status(ctx)
	if err != nil || !st.Managed || st.Firewall.Ruleset == "" || st.LastError != "" {
		t.Fatalf("Status() = %+v, %v; want managed with a ruleset and no error", st, err)
	}

	// A try with another address reverts after its timeout.
	tried := strings.Replace(tp.config, "192.168.1.10/24", "192.168.1.11/24", 1)
	res, err := cl.Try(ctx, []byte(tried), 4*time.Second)
	if err != nil {
		t.Fatalf("Try: %v", err)
	}
	if !strings.Contains(strings.Join(res.Plan, "\n"), "add-addr mgmt0 192.168.1.11/24") {
		t.Errorf("Try plan = %q, want it to add 192.168.1.11/24", res.Plan)
	}
	if !hasAddr("192.168.1.11/24")() {
		t.Errorf("the trial address is not on mgmt0")
	}
	if st, _ := cl.Status(ctx); st.Try == nil {
		t.Errorf("Status().Try = nil during a trial")
	}
	if _, err := cl.Try(ctx, []byte(tried), 4*time.Second); err == nil || !strings.Contains(err.Error(), "pending") {
		t.Errorf("second Try = %v, want a pending-trial error", err)
	}
	waitFor("revert to 192.168.1.10", 10*time.Second, func() bool { return hasAddr("192.168.1.10/24")() && !hasAddr("192.168.1.11/24")() })

	// An unknown MAC is refused and nothing changes.
	before := tp.snapshot(t)
	bad := strings.Replace(tp.config, "52:54:00:aa:00:01", "52:54:00:aa:00:77", 1)
	if _, err := cl.Try(ctx, []byte(bad), 2*time.Second); err == nil || !strings.Contains(err.Error(), "network.interfaces[0].mac: no link has MAC 52:54:00:aa:00:77") {
		t.Errorf("Try(unknown MAC) = %v, want the field named", err)
	}
	if after := tp.snapshot(t); after != before {
		t.Errorf("a refused Try changed the namespace:\n%s", cmp.Diff(before, after))
	}
	// An invalid config names the field.
	if _, err := cl.Try(ctx, []byte(strings.Replace(tp.config, "192.168.1.10/24", "192.168.1.10", 1)), 2*time.Second); err == nil ||
		!strings.Contains(err.Error(), "network.interfaces[0].addresses[0]") {
		t.Errorf("Try(invalid) = %v, want the field named", err)
	}

	// Confirmed, it stays.
	if _, err := cl.Try(ctx, []byte(tried), 4*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := cl.Confirm(ctx); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	time.Sleep(5 * time.Second)
	if !hasAddr("192.168.1.11/24")() {
		t.Errorf("the confirmed address is gone")
	}
	if err := cl.Confirm(ctx); err == nil {
		t.Errorf("Confirm without a trial = nil, want an error")
	}
}

// TestDHCPLeaseAndRenewal runs the upstream DHCP client against a DHCP server
// in the peer namespace that hands out 4 s leases.
func TestDHCPLeaseAndRenewal(t *testing.T) {
	tp := newNSTopo(t)
	var acks atomic.Int32
	handler := func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		typ := dhcpv4.MessageTypeOffer
		if m.MessageType() == dhcpv4.MessageTypeRequest {
			typ = dhcpv4.MessageTypeAck
			acks.Add(1)
		}
		reply, err := dhcpv4.NewReplyFromRequest(m,
			dhcpv4.WithMessageType(typ),
			dhcpv4.WithYourIP(net.IPv4(203, 0, 113, 50)),
			dhcpv4.WithServerIP(net.IPv4(203, 0, 113, 1)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(203, 0, 113, 1))),
			dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
			dhcpv4.WithRouter(net.IPv4(203, 0, 113, 1)),
			dhcpv4.WithDNS(net.IPv4(203, 0, 113, 53)),
			dhcpv4.WithLeaseTime(4),
		)
		if err != nil {
			return
		}
		if p, ok := peer.(*net.UDPAddr); ok && p.IP.IsUnspecified() {
			peer = &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
		}
		conn.WriteTo(reply.ToBytes(), peer)
	}
	var srv *server4.Server
	if err := tp.up.Do(func() (err error) {
		srv, err = server4.NewServer("eth0", &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, handler)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()

	ctx := t.Context()
	m := tp.manager(t, ctx)
	cfg := parse(t, strings.Replace(tp.config, "  routes:", "    - {name: up0, role: upstream, dhcp: true}\n  routes:", 1))
	if _, err := m.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for acks.Load() < 3 { // the first lease and two renewals
		if time.Now().After(deadline) {
			t.Fatalf("%d DHCPACKs within 15s, want 3 (lease and renewals at T1 = 2s)\n%s", acks.Load(), tp.kiln.IP("addr"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	addr := tp.kiln.IP("-o", "-4", "addr", "show", "dev", "up0")
	if !strings.Contains(addr, "203.0.113.50/24") || !strings.Contains(addr, "dynamic") || strings.Contains(addr, "valid_lft forever") {
		t.Errorf("up0 addresses = %q, want 203.0.113.50/24 with the lease's lifetime", addr)
	}
	if r := tp.kiln.IP("route", "show", "default"); !strings.Contains(r, "default via 203.0.113.1 dev up0 proto dhcp metric 100") {
		t.Errorf("default route = %q, want via 203.0.113.1 dev up0 proto dhcp metric 100", r)
	}
	b, _ := os.ReadFile(tp.resolv)
	if !strings.Contains(string(b), "nameserver 192.0.2.53\nnameserver 203.0.113.53\n") {
		t.Errorf("resolv.conf = %q, want the configured then the leased server", b)
	}
	if l := m.Leases()["up0"]; l.Addr.String() != "203.0.113.50/24" || l.Duration != 4*time.Second {
		t.Errorf("Leases()[up0] = %+v, want 203.0.113.50/24 for 4s", l)
	}
	// The leased address is not kiln's static state: re-applying keeps it.
	if res, err := m.Apply(ctx, cfg); err != nil || !res.Empty() {
		t.Errorf("Apply with a lease in place = %q, %v; want an empty plan", res.Plan.String(), err)
	}
}
