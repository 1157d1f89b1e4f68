package dhcp

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/internal/bootnonce"
	"kiln.dev/kiln/services/store"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var (
	testMAC      = net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc}
	testXID      = dhcpv4.TransactionID{0xde, 0xad, 0xbe, 0xef}
	testNonceKey = bootnonce.NewKey(bytes.Repeat([]byte{7}, 32))
)

func testSubnet() config.Subnet {
	return config.Subnet{
		Name: "hall-a", Interface: "eth1", CIDR: "10.0.0.0/24", Mode: config.ModeAuthoritative,
		Pool:   config.Pool{Start: "10.0.0.100", End: "10.0.0.199"},
		Router: "10.0.0.254", NTP: []string{"10.0.0.1"}, Syslog: []string{"10.0.0.1"}, MTU: 1500,
		LeaseTime: time.Hour,
		Boot:      config.Boot{HTTPBase: "http://10.0.0.1:8080"},
	}
}

// request builds a client message the way firmware would.
func request(t testing.TB, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	all := append([]dhcpv4.Modifier{
		dhcpv4.WithTransactionID(testXID),
		dhcpv4.WithHwAddr(testMAC),
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithBroadcast(true),
	}, mods...)
	m, err := dhcpv4.New(all...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func pxeClient(arch iana.Arch) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("PXEClient:Arch:%05d:UNDI:002001", arch))),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
	}
}

func TestReplyGolden(t *testing.T) {
	host := &store.Host{Name: "pc-07", Role: "worker", Token: "0123456789abcdef0123456789abcdef"}
	snp := &store.Host{Name: "pc-08", Role: "worker", Token: "fedcba9876543210fedcba9876543210", IPXEBinary: "snponly.efi"}
	enrolled := &store.Host{Name: "unknown-525400aabbcc", Role: store.EnrolledRole, Token: "00000000000000000000000000000000"}
	self := netip.MustParseAddr("10.0.0.1")
	yours := netip.MustParseAddr("10.0.0.100")
	proxySub := config.Subnet{Name: "office", Interface: "eth0", CIDR: "10.0.0.0/24", Mode: config.ModeProxy}
	dns := []netip.Addr{self}
	offer := func(h *store.Host) state {
		return state{Type: dhcpv4.MessageTypeOffer, ServerIP: self, YourIP: yours, Subnet: testSubnet(), Domain: "hall.example", DNS: dns, NTP: dns, Syslog: dns, Host: h}
	}
	ipxeOffer := offer(host)
	ipxeOffer.BootNonce = testNonceKey.Mint(bootnonce.Exchange{XID: testXID, MAC: testMAC, Addr: yours}, time.Unix(1_800_000_000, 0))
	proxyNonce := testNonceKey.Mint(bootnonce.Exchange{XID: testXID, MAC: testMAC}, time.Unix(1_800_000_000, 0))
	tests := []struct {
		name string
		req  *dhcpv4.DHCPv4
		st   state
	}{
		{"bios-pxe-offer", request(t, dhcpv4.MessageTypeDiscover, pxeClient(iana.INTEL_X86PC)...), offer(enrolled)},
		{"uefi-pxe-offer", request(t, dhcpv4.MessageTypeDiscover, pxeClient(iana.EFI_X86_64)...), offer(host)},
		{"uefi-pxe-snponly-offer", request(t, dhcpv4.MessageTypeDiscover, pxeClient(iana.EFI_BC)...), offer(snp)},
		{"uefi-http-offer", request(t, dhcpv4.MessageTypeDiscover,
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP))), offer(host)},
		{"ipxe-offer", request(t, dhcpv4.MessageTypeDiscover, append(pxeClient(iana.EFI_X86_64),
			dhcpv4.WithUserClass("iPXE", false))...), ipxeOffer},
		{"ipxe-unknown-host-ack", request(t, dhcpv4.MessageTypeRequest, append(pxeClient(iana.INTEL_X86PC),
			dhcpv4.WithUserClass("iPXE", false),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(yours.AsSlice())))...),
			state{Type: dhcpv4.MessageTypeAck, ServerIP: self, YourIP: yours, Subnet: testSubnet(), DNS: dns, NTP: dns, Syslog: dns}},
		{"plain-client-ack", request(t, dhcpv4.MessageTypeRequest,
			dhcpv4.WithOption(dhcpv4.OptHostName("pc-07")),
			dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 0x52, 0x54, 0, 0xaa, 0xbb, 0xcc}))),
			state{Type: dhcpv4.MessageTypeAck, ServerIP: self, YourIP: yours, Subnet: testSubnet(), Domain: "hall.example", DNS: dns, NTP: dns, Syslog: dns, Host: host}},
		{"relayed-offer", request(t, dhcpv4.MessageTypeDiscover,
			dhcpv4.WithGatewayIP(net.IPv4(10, 0, 0, 2)),
			dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(
				dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte("sw1/7")),
				dhcpv4.OptGeneric(dhcpv4.AgentRemoteIDSubOption, []byte{0, 1, 2})))), offer(host)},
		{"inform-ack", request(t, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.IPv4(10, 0, 0, 50))),
			state{Type: dhcpv4.MessageTypeAck, Inform: true, ServerIP: self, Subnet: testSubnet(), Domain: "hall.example", DNS: dns, NTP: dns, Syslog: dns}},
		{"nak", request(t, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 5)))),
			state{Type: dhcpv4.MessageTypeNak, ServerIP: self, Subnet: testSubnet(), NakMessage: "192.168.1.5 is not in 10.0.0.0/24"}},
		{"proxy-bios-offer", request(t, dhcpv4.MessageTypeDiscover, pxeClient(iana.INTEL_X86PC)...),
			state{Type: dhcpv4.MessageTypeOffer, Proxy: true, ServerIP: self, Subnet: proxySub, Host: host}},
		{"proxy-uefi-4011-ack", request(t, dhcpv4.MessageTypeRequest, append(pxeClient(iana.EFI_X86_64),
			dhcpv4.WithClientIP(net.IPv4(10, 0, 0, 77)))...),
			state{Type: dhcpv4.MessageTypeAck, Proxy: true, ServerIP: self, Subnet: proxySub, Host: host}},
		{"proxy-ipxe-offer", request(t, dhcpv4.MessageTypeDiscover, append(pxeClient(iana.EFI_X86_64),
			dhcpv4.WithUserClass("iPXE", true))...),
			state{Type: dhcpv4.MessageTypeOffer, Proxy: true, ServerIP: self, Subnet: proxySub, Host: host, BootNonce: proxyNonce}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := reply(tt.req, tt.st)
			if err != nil || resp == nil {
				t.Fatalf("reply(%s) = %v, %v, want a reply", tt.name, resp, err)
			}
			// What goes on the wire must parse back to the same thing.
			wire, err := dhcpv4.FromBytes(resp.ToBytes())
			if err != nil {
				t.Fatalf("reply(%s) does not parse back: %v", tt.name, err)
			}
			got := wire.Summary()
			path := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("reading golden file (run go test -update): %v", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("reply(%s) differs from %s (-want +got):\n%s", tt.name, path, diff)
			}
		})
	}
}

func TestReplyNoBootForPlainOrUnknownArch(t *testing.T) {
	self := netip.MustParseAddr("10.0.0.1")
	proxy := state{Type: dhcpv4.MessageTypeOffer, Proxy: true, ServerIP: self, Subnet: config.Subnet{Name: "p", CIDR: "10.0.0.0/24", Mode: config.ModeProxy}}
	for _, tt := range []struct {
		name string
		req  *dhcpv4.DHCPv4
	}{
		{"plain client", request(t, dhcpv4.MessageTypeDiscover)},
		{"arm64 pxe", request(t, dhcpv4.MessageTypeDiscover, pxeClient(iana.EFI_ARM64)...)},
	} {
		if resp, err := reply(tt.req, proxy); resp != nil || err != nil {
			t.Errorf("reply(%s, proxy) = %v, %v, want no reply", tt.name, resp, err)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		name string
		req  *dhcpv4.DHCPv4
		want client
	}{
		{"plain", request(t, dhcpv4.MessageTypeDiscover), client{}},
		{"arch from vendor class only", request(t, dhcpv4.MessageTypeDiscover,
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016"))), client{pxe: true, arch: iana.EFI_X86_64}},
		{"ipxe option 175", request(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{1, 1, 1})), client{ipxe: true}},
		{"http", request(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001"))),
			client{http: true, arch: iana.EFI_X86_64_HTTP}},
	} {
		if got := classify(tt.req); got != tt.want {
			t.Errorf("classify(%s) = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// TestBootURLPort points iPXE at provisioning.http_boot.listen's port when
// the subnet sets no boot.http_base.
func TestBootURLPort(t *testing.T) {
	req := request(t, dhcpv4.MessageTypeDiscover, append(pxeClient(iana.EFI_X86_64), dhcpv4.WithUserClass("iPXE", false))...)
	sub := testSubnet()
	sub.Boot.HTTPBase = ""
	for _, tc := range []struct {
		port int
		want string
	}{
		{0, "http://10.0.0.1:8080/boot/52-54-00-aa-bb-cc.ipxe?nonce=n0nce"},
		{8081, "http://10.0.0.1:8081/boot/52-54-00-aa-bb-cc.ipxe?nonce=n0nce"},
	} {
		b, ok := bootFor(req, state{ServerIP: netip.MustParseAddr("10.0.0.1"), Subnet: sub, HTTPPort: tc.port, Host: &store.Host{Name: "pc-07"}, BootNonce: "n0nce"})
		if !ok || b.file != tc.want {
			t.Errorf("bootFor(iPXE, HTTPPort %d) = %q, %v, want %q", tc.port, b.file, ok, tc.want)
		}
	}
}
