package dhcp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/internal/bootnonce"
	"kiln.dev/kiln/services/store"
)

// fakeProber answers for the addresses in inUse.
type fakeProber struct {
	// mu guards inUse and probed.
	mu     sync.Mutex
	inUse  map[netip.Addr]net.HardwareAddr
	probed []netip.Addr
}

func (f *fakeProber) Probe(_ context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probed = append(f.probed, ip)
	return f.inUse[ip], nil
}

// testLogger sends slog output to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return testlog.New(t, slog.LevelDebug).With("component", "dhcp")
}

type testServer struct {
	*server
	db    *store.Store
	probe *fakeProber
	clock *time.Time
	eth1  ingress
}

func newTestServer(t testing.TB, subs ...config.Subnet) *testServer {
	t.Helper()
	db, err := store.Open(context.Background(), store.Path(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ts := &testServer{db: db, probe: &fakeProber{inUse: map[netip.Addr]net.HardwareAddr{}}, clock: &now}
	ts.server = &server{log: testLogger(t), db: db, now: func() time.Time { return *ts.clock }, domain: "hall.example", dnsOn: true, nonces: testNonceKey}
	if len(subs) == 0 {
		subs = []config.Subnet{testSubnet()}
	}
	for i, c := range subs {
		sub := newSubnet(i, c)
		if c.Interface != "" {
			sub.self = sub.prefix.Addr().Next()
		}
		if c.Mode == config.ModeAuthoritative {
			sub.probe = ts.probe
		}
		ts.subnets = append(ts.subnets, sub)
	}
	ts.eth1 = ingress{ifname: "eth1", ifaddr: netip.MustParseAddr("10.0.0.1"), dst: netip.MustParseAddr("255.255.255.255"),
		peer: netip.MustParseAddrPort("0.0.0.0:68")}
	return ts
}

func (ts *testServer) do(t testing.TB, req *dhcpv4.DHCPv4, in ingress) (*dhcpv4.DHCPv4, netip.AddrPort) {
	t.Helper()
	resp, dst, err := ts.handle(context.Background(), req, in)
	if err != nil {
		t.Fatalf("handle(%s) = %v", req.MessageType(), err)
	}
	return resp, dst
}

func msgFrom(t testing.TB, mac string, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	hw, _ := net.ParseMAC(mac)
	return request(t, mt, append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw)}, mods...)...)
}

func yiaddr(m *dhcpv4.DHCPv4) string {
	if m == nil {
		return "<no reply>"
	}
	return m.YourIPAddr.String()
}

func TestDiscoverRequestEnrolls(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t)
	mac := "52:54:00:00:00:01"
	offer, dst := ts.do(t, msgFrom(t, mac, dhcpv4.MessageTypeDiscover), ts.eth1)
	if offer.MessageType() != dhcpv4.MessageTypeOffer || yiaddr(offer) != "10.0.0.100" {
		t.Fatalf("DISCOVER = %s %s, want OFFER 10.0.0.100", offer.MessageType(), yiaddr(offer))
	}
	if dst.String() != "255.255.255.255:68" {
		t.Errorf("OFFER sent to %s, want broadcast", dst)
	}
	if h, err := ts.db.HostByMAC(ctx, mac); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("HostByMAC after DISCOVER = %q, %v, want none yet (enrolled on REQUEST)", h.Name, err)
	}
	ack, _ := ts.do(t, msgFrom(t, mac, dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptHostName("debian"))), ts.eth1)
	if ack.MessageType() != dhcpv4.MessageTypeAck || yiaddr(ack) != "10.0.0.100" {
		t.Fatalf("REQUEST = %s %s, want ACK 10.0.0.100", ack.MessageType(), yiaddr(ack))
	}
	if h, err := ts.db.HostByMAC(ctx, mac); err != nil || h.Name != "unknown-525400000001" {
		t.Errorf("HostByMAC after REQUEST = %q, %v, want unknown-525400000001", h.Name, err)
	}
	l, err := ts.db.LeaseByMAC(ctx, "hall-a", mac)
	if err != nil || l.State != store.LeaseBound || l.Hostname != "debian" || !l.Expires.Equal(ts.now().Add(firstLease)) {
		t.Errorf("lease after ACK = %+v, %v, want bound for %s (an unregistered machine's first lease) with hostname debian", l, err, firstLease)
	}
	evs, _ := ts.db.BootEvents(ctx, mac, 10)
	if len(evs) != 2 || evs[0].Kind != store.EventDHCPAck || evs[1].Kind != store.EventDHCPOffer || !strings.Contains(evs[0].Detail, "ip=10.0.0.100") {
		t.Errorf("BootEvents = %+v, want dhcp_ack then dhcp_offer with the address", evs)
	}
	// A second client gets the next address; the first keeps its own on rediscover.
	if o, _ := ts.do(t, msgFrom(t, "52:54:00:00:00:02", dhcpv4.MessageTypeDiscover), ts.eth1); yiaddr(o) != "10.0.0.101" {
		t.Errorf("DISCOVER (second client) = %s, want 10.0.0.101", yiaddr(o))
	}
	probes := len(ts.probe.probed)
	if o, _ := ts.do(t, msgFrom(t, mac, dhcpv4.MessageTypeDiscover), ts.eth1); yiaddr(o) != "10.0.0.100" {
		t.Errorf("DISCOVER (first client again) = %s, want 10.0.0.100", yiaddr(o))
	}
	if got := ts.probe.probed[probes:]; len(got) != 0 {
		t.Errorf("rediscover with an unexpired lease probed %v, want no probe (the address is the client's own)", got)
	}
	if l, _ := ts.db.LeaseByMAC(ctx, "hall-a", mac); l.State != store.LeaseBound {
		t.Errorf("rediscover turned the bound lease into %s", l.State)
	}
}

// TestBootEventsHaveNoToken: the ACK tells iPXE its script URL with this
// exchange's nonce; the boot event recording it (shown to read-scope API
// users) names the file without the query.
func TestBootEventsHaveNoToken(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t)
	mac := "52:54:00:00:00:07"
	h, err := ts.db.CreateHost(ctx, store.Host{Name: "pc-07", MACs: []string{mac}})
	if err != nil {
		t.Fatal(err)
	}
	ipxe := dhcpv4.WithUserClass("iPXE", false)
	offer, _ := ts.do(t, msgFrom(t, mac, dhcpv4.MessageTypeDiscover, ipxe), ts.eth1)
	ack, _ := ts.do(t, msgFrom(t, mac, dhcpv4.MessageTypeRequest, ipxe,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr))), ts.eth1)
	if f := ack.BootFileNameOption(); !strings.Contains(f, "?nonce=") || strings.Contains(f, h.Token) {
		t.Fatalf("ACK boot file = %q, want the script URL with a nonce and without the host's token", f)
	}
	evs, err := ts.db.BootEvents(ctx, mac, 10)
	if err != nil || len(evs) != 2 {
		t.Fatalf("BootEvents = %+v, %v, want offer and ack", evs, err)
	}
	for _, e := range evs {
		if strings.Contains(e.Detail, "nonce") || !strings.Contains(e.Detail, "file=http://10.0.0.1:8080/boot/52-54-00-00-00-07.ipxe ") {
			t.Errorf("%s event detail = %q, want the script URL without its query", e.Kind, e.Detail)
		}
	}
}

// TestRepliesCarryNoHostToken walks every reply kiln sends a network-booting
// machine — firmware PXE, UEFI HTTP boot, iPXE's DISCOVER, REQUEST and
// INFORM, proxyDHCP's offer and port 4011 ACK — for a registered host with
// a reservation and the vet profile: no packet holds the host's token (in
// any encoding), and each script URL's nonce is bound to that exchange and
// the address the machine will ask from, and redeems once.
func TestRepliesCarryNoHostToken(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t, testSubnet(), config.Subnet{Name: "office", Interface: "eth2", CIDR: "10.2.0.0/24", Mode: config.ModeProxy,
		Boot: config.Boot{HTTPBase: "http://10.2.0.1:8080"}})
	mac := "52:54:00:00:00:07"
	reserved := netip.MustParseAddr("10.0.0.7")
	h, err := ts.db.CreateHost(ctx, store.Host{Name: "pc-07", MACs: []string{mac}, IPv4: reserved, BootProfile: store.BootVet})
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{h.Token, strings.ToUpper(h.Token), url.QueryEscape(h.Token), base64.StdEncoding.EncodeToString([]byte(h.Token))}
	if raw, err := hex.DecodeString(h.Token); err == nil {
		secrets = append(secrets, string(raw))
	}
	eth2 := ingress{ifname: "eth2", ifaddr: netip.MustParseAddr("10.2.0.1"), dst: netip.MustParseAddr("255.255.255.255"), peer: netip.MustParseAddrPort("0.0.0.0:68")}
	at4011 := eth2
	at4011.port4011, at4011.dst, at4011.peer = true, netip.MustParseAddr("10.2.0.1"), netip.MustParseAddrPort("10.2.0.77:68")
	ipxe := append(pxeClient(iana.EFI_X86_64), dhcpv4.WithUserClass("iPXE", false))
	serverID := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1)))
	r := bootnonce.NewRedeemer(testNonceKey, 0, ts.now())
	for _, tc := range []struct {
		name     string
		req      *dhcpv4.DHCPv4
		in       ingress
		wantFile string // boot file without the query
		bound    netip.Addr
	}{
		{"firmware PXE DISCOVER", msgFrom(t, mac, dhcpv4.MessageTypeDiscover, pxeClient(iana.EFI_X86_64)...), ts.eth1, "ipxe.efi", netip.Addr{}},
		{"UEFI HTTP DISCOVER", msgFrom(t, mac, dhcpv4.MessageTypeDiscover,
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP))), ts.eth1, "http://10.0.0.1:8080/ipxe/ipxe.efi", netip.Addr{}},
		{"iPXE DISCOVER", msgFrom(t, mac, dhcpv4.MessageTypeDiscover, ipxe...), ts.eth1, "http://10.0.0.1:8080/boot/52-54-00-00-00-07.ipxe", reserved},
		{"iPXE REQUEST", msgFrom(t, mac, dhcpv4.MessageTypeRequest, append(ipxe, serverID,
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(reserved.AsSlice())))...), ts.eth1, "http://10.0.0.1:8080/boot/52-54-00-00-00-07.ipxe", reserved},
		{"iPXE INFORM", msgFrom(t, mac, dhcpv4.MessageTypeInform, append(ipxe, dhcpv4.WithClientIP(reserved.AsSlice()))...), ts.eth1,
			"http://10.0.0.1:8080/boot/52-54-00-00-00-07.ipxe", reserved},
		{"proxyDHCP offer to iPXE", msgFrom(t, mac, dhcpv4.MessageTypeDiscover, ipxe...), eth2, "http://10.2.0.1:8080/boot/52-54-00-00-00-07.ipxe", netip.Addr{}},
		{"proxyDHCP port 4011 ACK to iPXE", msgFrom(t, mac, dhcpv4.MessageTypeRequest, append(ipxe, dhcpv4.WithClientIP(net.IPv4(10, 2, 0, 77)))...), at4011,
			"http://10.2.0.1:8080/boot/52-54-00-00-00-07.ipxe", netip.MustParseAddr("10.2.0.77")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.TransactionID = dhcpv4.TransactionID{0x70, 0x78, 0x65, byte(len(tc.name))}
			resp, _ := ts.do(t, tc.req, tc.in)
			if resp == nil {
				t.Fatal("no reply")
			}
			wire := resp.ToBytes()
			for _, sec := range secrets {
				if bytes.Contains(wire, []byte(sec)) {
					t.Fatalf("the %s on the wire holds the host's token (as %q)", resp.MessageType(), sec)
				}
			}
			f := resp.BootFileNameOption()
			file, query, _ := strings.Cut(f, "?")
			if file != tc.wantFile {
				t.Errorf("boot file = %q, want %q", f, tc.wantFile)
			}
			if !strings.HasSuffix(file, ".ipxe") {
				if query != "" {
					t.Errorf("boot file %q has a query; want none outside script URLs", f)
				}
				return
			}
			v, err := url.ParseQuery(query)
			if err != nil || len(v) != 1 || len(v["nonce"]) != 1 {
				t.Fatalf("script URL query = %q, want only nonce=", query)
			}
			nonce := v.Get("nonce")
			hw, _ := net.ParseMAC(mac)
			tk, err := testNonceKey.Open(nonce, hw)
			if err != nil {
				t.Fatalf("Open(nonce) = %v", err)
			}
			if tk.XID != tc.req.TransactionID || tk.Addr != tc.bound || !tk.Expires.Equal(ts.now().Add(bootnonce.Lifetime)) {
				t.Errorf("nonce ticket = %v, want xid %x, address %v, expiry now+%s", tk, tc.req.TransactionID, tc.bound, bootnonce.Lifetime)
			}
			client := tc.bound
			if !client.IsValid() {
				client = netip.MustParseAddr("10.2.0.77")
			}
			if _, err := r.Redeem(nonce, hw, client, ts.now()); err != nil {
				t.Errorf("Redeem = %v, want the nonce redeemable by its machine", err)
			}
			if _, err := r.Redeem(nonce, hw, client, ts.now()); !errors.Is(err, bootnonce.ErrUsed) {
				t.Errorf("second Redeem = %v, want %v", err, bootnonce.ErrUsed)
			}
		})
	}
}

func TestReservation(t *testing.T) {
	ts := newTestServer(t)
	_, err := ts.db.CreateHost(context.Background(), store.Host{Name: "pc-07", MACs: []string{"52:54:00:00:00:07"}, IPv4: netip.MustParseAddr("10.0.0.7")})
	if err != nil {
		t.Fatal(err)
	}
	offer, _ := ts.do(t, msgFrom(t, "52:54:00:00:00:07", dhcpv4.MessageTypeDiscover), ts.eth1)
	if yiaddr(offer) != "10.0.0.7" || offer.HostName() != "pc-07" {
		t.Errorf("DISCOVER (reserved) = %s hostname %q, want 10.0.0.7 pc-07", yiaddr(offer), offer.HostName())
	}
	if len(ts.probe.probed) != 0 {
		t.Errorf("reserved address was probed: %v", ts.probe.probed)
	}
	nak, _ := ts.do(t, msgFrom(t, "52:54:00:00:00:07", dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 100)))), ts.eth1)
	if nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("REQUEST (not the reservation) = %s, want NAK", nak.MessageType())
	}
	// Nobody else may take the reserved address from the pool side.
	nak, _ = ts.do(t, msgFrom(t, "52:54:00:00:00:08", dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 7)))), ts.eth1)
	if nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("REQUEST (someone else's reservation) = %s, want NAK", nak.MessageType())
	}
}

func TestConflictProbeAndDecline(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t)
	ts.probe.inUse[netip.MustParseAddr("10.0.0.100")] = net.HardwareAddr{2, 0, 0, 0, 0, 9}
	offer, _ := ts.do(t, msgFrom(t, "52:54:00:00:00:01", dhcpv4.MessageTypeDiscover), ts.eth1)
	if yiaddr(offer) != "10.0.0.101" {
		t.Fatalf("DISCOVER with .100 in use = %s, want 10.0.0.101", yiaddr(offer))
	}
	if l, err := ts.db.LeaseByIP(ctx, netip.MustParseAddr("10.0.0.100")); err != nil || l.State != store.LeaseDeclined {
		t.Errorf("lease of probed-busy address = %+v, %v, want declined", l, err)
	}
	// The client itself answering for its address is no conflict.
	ts.probe.inUse[netip.MustParseAddr("10.0.0.101")] = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	if o, _ := ts.do(t, msgFrom(t, "52:54:00:00:00:01", dhcpv4.MessageTypeDiscover), ts.eth1); yiaddr(o) != "10.0.0.101" {
		t.Errorf("DISCOVER answered by the client itself = %s, want 10.0.0.101", yiaddr(o))
	}
	// DECLINE sets the address aside; the next DISCOVER gets another.
	if r, _ := ts.do(t, msgFrom(t, "52:54:00:00:00:01", dhcpv4.MessageTypeDecline,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 101))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1)))), ts.eth1); r != nil {
		t.Errorf("DECLINE got a reply: %s", r.MessageType())
	}
	if o, _ := ts.do(t, msgFrom(t, "52:54:00:00:00:01", dhcpv4.MessageTypeDiscover), ts.eth1); yiaddr(o) != "10.0.0.102" {
		t.Errorf("DISCOVER after DECLINE = %s, want 10.0.0.102", yiaddr(o))
	}
	// After the hold the declined addresses come back.
	*ts.clock = ts.now().Add(declineHold + time.Minute)
	if o, _ := ts.do(t, msgFrom(t, "52:54:00:00:00:03", dhcpv4.MessageTypeDiscover), ts.eth1); yiaddr(o) == "<no reply>" {
		t.Errorf("DISCOVER after hold got no reply")
	}
}

// TestDeclineOnlyByOwner: RFC 2131 4.3.3 — a DECLINE takes an address out of
// use only when it comes from the client the address was offered or leased
// to; a forged DECLINE from another MAC must not wipe a bound lease.
func TestDeclineOnlyByOwner(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t)
	owner, other := "52:54:00:00:00:01", "52:54:00:00:00:66"
	sid := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1)))
	offer, _ := ts.do(t, msgFrom(t, owner, dhcpv4.MessageTypeDiscover), ts.eth1)
	ack, _ := ts.do(t, msgFrom(t, owner, dhcpv4.MessageTypeRequest, sid,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr))), ts.eth1)
	if ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("REQUEST = %s, want ACK", ack.MessageType())
	}
	bound := addrOf(ack.YourIPAddr)
	decline := func(mac string, ip netip.Addr) {
		t.Helper()
		if r, _ := ts.do(t, msgFrom(t, mac, dhcpv4.MessageTypeDecline, sid,
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip.AsSlice()))), ts.eth1); r != nil {
			t.Errorf("DECLINE got a reply: %s", r.MessageType())
		}
	}
	for _, tc := range []struct {
		name string
		mac  string
		ip   netip.Addr
	}{
		{"another client's bound lease", other, bound},
		{"a never-used address", other, netip.MustParseAddr("10.0.0.150")},
		{"an address the owner was never offered", owner, netip.MustParseAddr("10.0.0.151")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			decline(tc.mac, tc.ip)
			if l, err := ts.db.LeaseByIP(ctx, bound); err != nil || l.MAC != owner || l.State != store.LeaseBound {
				t.Errorf("lease of %s after DECLINE(%s, %s) = %+v, %v, want still bound to %s", bound, tc.mac, tc.ip, l, err, owner)
			}
			if l, err := ts.db.LeaseByIP(ctx, tc.ip); tc.ip != bound && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("DECLINE(%s, %s) stored %+v, %v, want nothing stored", tc.mac, tc.ip, l, err)
			}
		})
	}
	// The owner itself declining its address sets it aside.
	decline(owner, bound)
	if l, err := ts.db.LeaseByIP(ctx, bound); err != nil || l.State != store.LeaseDeclined {
		t.Errorf("lease of %s after the owner's DECLINE = %+v, %v, want declined", bound, l, err)
	}
}

func TestPoolExhausted(t *testing.T) {
	sub := testSubnet()
	sub.Pool = config.Pool{Start: "10.0.0.100", End: "10.0.0.101"}
	ts := newTestServer(t, sub)
	for _, mac := range []string{"52:54:00:00:00:01", "52:54:00:00:00:02"} {
		if o, _ := ts.do(t, msgFrom(t, mac, dhcpv4.MessageTypeDiscover), ts.eth1); o == nil {
			t.Fatalf("DISCOVER(%s) got no offer", mac)
		}
	}
	_, _, err := ts.handle(context.Background(), msgFrom(t, "52:54:00:00:00:03", dhcpv4.MessageTypeDiscover), ts.eth1)
	if err == nil || !strings.Contains(err.Error(), "provisioning.subnets[0].pool") {
		t.Errorf("DISCOVER on a full pool = %v, want an error naming provisioning.subnets[0].pool", err)
	}
	// Offers run out: the pool is free again.
	*ts.clock = ts.now().Add(offerHold + time.Second)
	if o, _ := ts.do(t, msgFrom(t, "52:54:00:00:00:03", dhcpv4.MessageTypeDiscover), ts.eth1); o == nil {
		t.Errorf("DISCOVER after offers expired got no offer")
	}
}

// TestFirstLease: a machine the operator has not registered gets at most
// firstLease until it renews at T1, then the subnet's lease time; a
// registered one gets the subnet's at once. OFFER and ACK say the same as
// the stored lease.
func TestFirstLease(t *testing.T) {
	ctx := context.Background()
	short := testSubnet()
	short.Name, short.Interface, short.CIDR, short.LeaseTime = "short", "eth2", "10.2.0.0/24", 5*time.Minute
	short.Pool = config.Pool{Start: "10.2.0.100", End: "10.2.0.199"}
	ts := newTestServer(t, testSubnet(), short)
	eth2 := ingress{ifname: "eth2", ifaddr: netip.MustParseAddr("10.2.0.1"), dst: netip.MustParseAddr("255.255.255.255"), peer: netip.MustParseAddrPort("0.0.0.0:68")}
	if _, err := ts.db.CreateHost(ctx, store.Host{Name: "pc-09", MACs: []string{"52:54:00:00:00:09"}}); err != nil {
		t.Fatal(err)
	}
	start := ts.now()
	// dora runs DISCOVER and REQUEST at start+at and returns the lease
	// times of the OFFER, the ACK and the stored lease.
	dora := func(mac string, at time.Duration, in ingress) (offer, ack, stored time.Duration) {
		t.Helper()
		*ts.clock = start.Add(at)
		o, _ := ts.do(t, msgFrom(t, mac, dhcpv4.MessageTypeDiscover), in)
		a, _ := ts.do(t, msgFrom(t, mac, dhcpv4.MessageTypeRequest,
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(o.ServerIdentifier())),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(o.YourIPAddr))), in)
		sub := "hall-a"
		if in.ifname == "eth2" {
			sub = "short"
		}
		l, err := ts.db.LeaseByMAC(ctx, sub, mac)
		if err != nil {
			t.Fatal(err)
		}
		return o.IPAddressLeaseTime(0), a.IPAddressLeaseTime(0), l.Expires.Sub(*ts.clock)
	}
	// renew sends a RENEWING REQUEST at start+at and returns the ACK's lease time.
	renew := func(mac string, at time.Duration) time.Duration {
		t.Helper()
		*ts.clock = start.Add(at)
		l, err := ts.db.LeaseByMAC(ctx, "hall-a", mac)
		if err != nil {
			t.Fatal(err)
		}
		in := ts.eth1
		in.dst, in.peer = netip.MustParseAddr("10.0.0.1"), netip.AddrPortFrom(l.IP, 68)
		a, _ := ts.do(t, msgFrom(t, mac, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(l.IP.AsSlice()), dhcpv4.WithBroadcast(false)), in)
		if a == nil || a.MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("RENEW of %s at +%s = %v, want ACK", mac, at, a)
		}
		return a.IPAddressLeaseTime(0)
	}
	check := func(what string, got, want time.Duration) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %s, want %s", what, got, want)
		}
	}
	o, a, st := dora("52:54:00:00:00:01", 0, ts.eth1)
	check("unknown machine: OFFER lease", o, firstLease)
	check("unknown machine: ACK lease", a, firstLease)
	check("unknown machine: stored lease", st, firstLease)
	// iPXE's own DORA 30 s later is still in the first half: short again.
	_, a, _ = dora("52:54:00:00:00:01", 30*time.Second, ts.eth1)
	check("unknown machine, second DORA before T1: ACK lease", a, firstLease)
	check("unknown machine, RENEW before T1", renew("52:54:00:00:00:01", firstLease/2), firstLease)
	check("unknown machine, RENEW at T1", renew("52:54:00:00:00:01", firstLease), time.Hour)
	check("unknown machine, RENEW with a full lease", renew("52:54:00:00:00:01", firstLease+time.Minute), time.Hour)
	o, a, st = dora("52:54:00:00:00:09", 0, ts.eth1)
	check("registered machine: OFFER lease", o, time.Hour)
	check("registered machine: ACK lease", a, time.Hour)
	check("registered machine: stored lease", st, time.Hour)
	_, a, _ = dora("52:54:00:00:00:02", 0, eth2)
	check("unknown machine, subnet lease shorter than firstLease: ACK lease", a, 5*time.Minute)
	// A lease that ran out starts over with a short one.
	_, a, _ = dora("52:54:00:00:00:01", firstLease+2*time.Hour, ts.eth1)
	check("unknown machine back after its lease expired: ACK lease", a, firstLease)
}

func TestRequestForms(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t)
	a, b := "52:54:00:00:00:0a", "52:54:00:00:00:0b"
	ts.do(t, msgFrom(t, a, dhcpv4.MessageTypeDiscover), ts.eth1)
	// SELECTING another server: our offer is dropped, no reply.
	if r, _ := ts.do(t, msgFrom(t, a, dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 9))),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 50)))), ts.eth1); r != nil {
		t.Errorf("REQUEST to another server got %s", r.MessageType())
	}
	if l, _ := ts.db.LeaseByMAC(ctx, "hall-a", a); l.State != store.LeaseReleased {
		t.Errorf("offer after client chose another server is %s, want released", l.State)
	}
	// INIT-REBOOT for a free pool address: ACK (authoritative).
	if r, _ := ts.do(t, msgFrom(t, a, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 150)))), ts.eth1); r.MessageType() != dhcpv4.MessageTypeAck || yiaddr(r) != "10.0.0.150" {
		t.Errorf("INIT-REBOOT for free address = %s %s, want ACK 10.0.0.150", r.MessageType(), yiaddr(r))
	}
	// Someone else asking for it: NAK. Outside the pool: NAK. Wrong network: NAK.
	for _, ip := range []net.IP{net.IPv4(10, 0, 0, 150), net.IPv4(10, 0, 0, 20), net.IPv4(192, 168, 0, 1)} {
		if r, _ := ts.do(t, msgFrom(t, b, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip))), ts.eth1); r.MessageType() != dhcpv4.MessageTypeNak {
			t.Errorf("REQUEST %s by another client = %s, want NAK", ip, r.MessageType())
		}
	}
	// RENEWING: unicast from the client's address, answered to it.
	renew := msgFrom(t, a, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.IPv4(10, 0, 0, 150)), dhcpv4.WithBroadcast(false))
	in := ts.eth1
	in.dst, in.peer = netip.MustParseAddr("10.0.0.1"), netip.MustParseAddrPort("10.0.0.150:68")
	r, dst := ts.do(t, renew, in)
	if r.MessageType() != dhcpv4.MessageTypeAck || dst.String() != "10.0.0.150:68" {
		t.Errorf("RENEW = %s to %s, want ACK to 10.0.0.150:68", r.MessageType(), dst)
	}
	// RELEASE keeps the row for stickiness; the address comes back on DISCOVER.
	ts.do(t, msgFrom(t, a, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.IPv4(10, 0, 0, 150))), in)
	if l, _ := ts.db.LeaseByMAC(ctx, "hall-a", a); l.State != store.LeaseReleased {
		t.Errorf("lease after RELEASE is %s, want released", l.State)
	}
	if o, _ := ts.do(t, msgFrom(t, a, dhcpv4.MessageTypeDiscover), ts.eth1); yiaddr(o) != "10.0.0.150" {
		t.Errorf("DISCOVER after RELEASE = %s, want the same 10.0.0.150", yiaddr(o))
	}
	// INFORM: options only, to the client's address.
	inf, dst := ts.do(t, msgFrom(t, a, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.IPv4(10, 0, 0, 150))), in)
	if inf.MessageType() != dhcpv4.MessageTypeAck || !inf.YourIPAddr.IsUnspecified() || inf.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || dst.String() != "10.0.0.150:68" {
		t.Errorf("INFORM = %s yiaddr %s to %s, want ACK without address or lease time to 10.0.0.150:68", inf.MessageType(), inf.YourIPAddr, dst)
	}
}

func TestRelayAndOption82(t *testing.T) {
	ctx := context.Background()
	relayed := config.Subnet{Name: "hall-b", CIDR: "10.1.0.0/24", Mode: config.ModeAuthoritative,
		Pool: config.Pool{Start: "10.1.0.100", End: "10.1.0.110"}, Router: "10.1.0.1"}
	ts := newTestServer(t, testSubnet(), relayed)
	if _, err := ts.db.CreateHost(ctx, store.Host{Name: "rack3-u7", CircuitID: "sw3/7", IPv4: netip.MustParseAddr("10.1.0.37")}); err != nil {
		t.Fatal(err)
	}
	relay := []dhcpv4.Modifier{
		dhcpv4.WithGatewayIP(net.IPv4(10, 1, 0, 1)),
		dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte("sw3/7")))),
	}
	// Arrives on the unbound relay listener, unicast to kiln's address.
	in := ingress{dst: netip.MustParseAddr("192.0.2.10"), peer: netip.MustParseAddrPort("10.1.0.1:67")}
	offer, dst := ts.do(t, msgFrom(t, "52:54:00:00:03:07", dhcpv4.MessageTypeDiscover, relay...), in)
	if yiaddr(offer) != "10.1.0.37" || dst.String() != "10.1.0.1:67" || addrOf(offer.ServerIdentifier()).String() != "192.0.2.10" {
		t.Fatalf("relayed DISCOVER = %s to %s server-id %v, want 10.1.0.37 (option 82 match) to 10.1.0.1:67 from 192.0.2.10",
			yiaddr(offer), dst, offer.ServerIdentifier())
	}
	if offer.RelayAgentInfo() == nil {
		t.Errorf("relayed OFFER lacks the echoed option 82")
	}
	if _, err := ts.db.HostByMAC(ctx, "52:54:00:00:03:07"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("option-82-matched client was enrolled as a new host: %v", err)
	}
	// Another port: pool, enrolled, relay info kept on the lease.
	other := []dhcpv4.Modifier{dhcpv4.WithGatewayIP(net.IPv4(10, 1, 0, 1)),
		dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte("sw3/8"))))}
	offer, _ = ts.do(t, msgFrom(t, "52:54:00:00:03:08", dhcpv4.MessageTypeDiscover, other...), in)
	if yiaddr(offer) != "10.1.0.100" {
		t.Errorf("relayed DISCOVER (unknown port) = %s, want 10.1.0.100", yiaddr(offer))
	}
	if l, _ := ts.db.LeaseByMAC(ctx, "hall-b", "52:54:00:00:03:08"); l.RelayInfo != "circuit-id=sw3/8" {
		t.Errorf("lease relay info = %q, want circuit-id=sw3/8", l.RelayInfo)
	}
	// Not relayed and not on a served interface: ignored.
	if r, _ := ts.do(t, msgFrom(t, "52:54:00:00:03:09", dhcpv4.MessageTypeDiscover), in); r != nil {
		t.Errorf("unrelayed DISCOVER on the relay listener got %s", r.MessageType())
	}
}

func TestProxyMode(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t, config.Subnet{Name: "office", Interface: "eth1", CIDR: "10.0.0.0/24", Mode: config.ModeProxy})
	if r, _ := ts.do(t, msgFrom(t, "52:54:00:00:00:01", dhcpv4.MessageTypeDiscover), ts.eth1); r != nil {
		t.Errorf("proxy answered a non-PXE client: %s", r.MessageType())
	}
	pxe := pxeClient(iana.EFI_X86_64)
	offer, _ := ts.do(t, msgFrom(t, "52:54:00:00:00:02", dhcpv4.MessageTypeDiscover, pxe...), ts.eth1)
	if offer == nil || !offer.YourIPAddr.IsUnspecified() || offer.ClassIdentifier() != "PXEClient" || offer.BootFileName != "ipxe.efi" {
		t.Fatalf("proxy OFFER = %v, want no address, PXEClient, ipxe.efi", offer)
	}
	if r, _ := ts.do(t, msgFrom(t, "52:54:00:00:00:02", dhcpv4.MessageTypeRequest, pxe...), ts.eth1); r != nil {
		t.Errorf("proxy answered a REQUEST on port 67: %s", r.MessageType())
	}
	in := ts.eth1
	in.port4011, in.dst, in.peer = true, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddrPort("10.0.0.77:68")
	ack, dst := ts.do(t, msgFrom(t, "52:54:00:00:00:02", dhcpv4.MessageTypeRequest, append(pxe, dhcpv4.WithClientIP(net.IPv4(10, 0, 0, 77)))...), in)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || dst.String() != "10.0.0.77:68" {
		t.Fatalf("port 4011 REQUEST = %v to %s, want ACK to 10.0.0.77:68", ack, dst)
	}
	if _, err := ts.db.HostByMAC(ctx, "52:54:00:00:00:02"); err != nil {
		t.Errorf("PXE client in proxy mode not enrolled: %v", err)
	}
	if ls, _ := ts.db.Leases(ctx, ""); len(ls) != 0 {
		t.Errorf("proxy mode stored leases: %+v", ls)
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(2, 3, 100, func() time.Time { return now })
	a, b := [6]byte{1}, [6]byte{2}
	var got []bool
	for range 4 {
		got = append(got, l.Allow(a))
	}
	if want := []bool{true, true, true, false}; !slicesEqual(got, want) {
		t.Errorf("allow(a) x4 = %v, want %v", got, want)
	}
	if !l.Allow(b) {
		t.Errorf("allow(b) = false, want its own bucket")
	}
	now = now.Add(500 * time.Millisecond)
	if !l.Allow(a) || l.Allow(a) {
		t.Errorf("after 0.5s at 2/s: want exactly one more packet")
	}
}

func slicesEqual(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzHandle(f *testing.F) {
	for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeDecline,
		dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeInform} {
		f.Add(request(f, mt, pxeClient(iana.EFI_X86_64)...).ToBytes(), false)
		f.Add(request(f, mt, dhcpv4.WithGatewayIP(net.IPv4(10, 1, 0, 1)), dhcpv4.WithUserClass("iPXE", true),
			dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte{0xff})))).ToBytes(), true)
	}
	relayed := config.Subnet{Name: "hall-b", CIDR: "10.1.0.0/24", Mode: config.ModeAuthoritative, Pool: config.Pool{Start: "10.1.0.100", End: "10.1.0.101"}}
	proxy := config.Subnet{Name: "office", Interface: "eth2", CIDR: "10.2.0.0/24", Mode: config.ModeProxy}
	ts := newTestServer(f, testSubnet(), relayed, proxy)
	ts.log = slog.New(slog.DiscardHandler) // *testing.F must not log from fuzz calls
	f.Fuzz(func(t *testing.T, pkt []byte, port4011 bool) {
		req, err := dhcpv4.FromBytes(pkt)
		if err != nil {
			return
		}
		in := ts.eth1
		in.port4011 = port4011
		resp, _, err := ts.handle(context.Background(), req, in)
		if err == nil && resp != nil {
			if _, err := dhcpv4.FromBytes(resp.ToBytes()); err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
		}
	})
}

// TestOwnServerDefaults: options 42 (NTP) and 7 (log server) name kiln's
// own address on the subnet while kiln's NTP and syslog services run and the
// subnet lists no servers of its own; a subnet's own list always wins, and
// without the service nothing is sent.
func TestOwnServerDefaults(t *testing.T) {
	own := testSubnet()
	own.NTP, own.Syslog = nil, nil
	kiln := []net.IP{net.IPv4(10, 0, 0, 1).To4()}
	for _, tc := range []struct {
		name      string
		sub       config.Subnet
		on        bool
		ntp, sysl []net.IP
	}{
		{"kiln by default", own, true, kiln, kiln},
		{"subnet's lists win", func() config.Subnet { s := own; s.NTP, s.Syslog = []string{"10.0.0.9"}, []string{"10.0.0.8"}; return s }(), true,
			[]net.IP{net.IPv4(10, 0, 0, 9).To4()}, []net.IP{net.IPv4(10, 0, 0, 8).To4()}},
		{"services off: none", own, false, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, tc.sub)
			ts.ntpOn, ts.syslogOn = tc.on, tc.on
			offer, _ := ts.do(t, msgFrom(t, "52:54:00:00:00:42", dhcpv4.MessageTypeDiscover), ts.eth1)
			if got := dhcpv4.GetIPs(dhcpv4.OptionNTPServers, offer.Options); !slices.EqualFunc(got, tc.ntp, net.IP.Equal) {
				t.Errorf("OFFER option 42 = %v, want %v", got, tc.ntp)
			}
			if got := dhcpv4.GetIPs(dhcpv4.OptionLogServer, offer.Options); !slices.EqualFunc(got, tc.sysl, net.IP.Equal) {
				t.Errorf("OFFER option 7 = %v, want %v", got, tc.sysl)
			}
		})
	}
}
