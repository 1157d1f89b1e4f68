package dhcp

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/store"
)

// state is everything reply needs besides the request. The handler computes it
// (host lookup, address allocation, probing); reply itself is pure so replies
// can be golden-tested.
type state struct {
	// Type is the reply: MessageTypeOffer, MessageTypeAck or MessageTypeNak.
	Type dhcpv4.MessageType
	// Proxy marks a proxyDHCP reply: boot information only, no address.
	Proxy bool
	// Inform marks an ACK to DHCPINFORM: options only, no address or lease time.
	Inform bool
	// ServerIP is kiln's address as seen by the client (option 54).
	ServerIP netip.Addr
	// YourIP is the address handed out (zero for proxy, INFORM and NAK).
	YourIP netip.Addr
	// Subnet is the client's subnet config (prefix, router, options, boot).
	Subnet config.Subnet
	// HTTPPort is the HTTP boot service's port (0: the default), used in
	// boot URLs when the subnet sets no boot.http_base.
	HTTPPort int
	// Domain is the DNS domain (option 15).
	Domain string
	// DNS (option 6), NTP (option 42) and log servers (option 7) with
	// defaults applied.
	DNS, NTP, Syslog []netip.Addr
	// Host is the client's host record, nil if unknown.
	Host *store.Host
	// LeaseTime is the lease handed out; 0: the subnet's.
	LeaseTime time.Duration
	// BootNonce goes in an iPXE client's script URL ("": none): the
	// single-use nonce of this exchange, never the host's token.
	BootNonce string
	// NakMessage explains a NAK (option 56).
	NakMessage string
}

// Boot file names of Debian's ipxe package, served by TFTP (and by HTTP under
// <http_base>/ipxe/ for UEFI HTTP boot).
const (
	fileBIOS = "undionly.kpxe"
	fileUEFI = "ipxe.efi"
)

// PXE vendor classes (option 60).
const (
	vendorPXE  = "PXEClient"
	vendorHTTP = "HTTPClient"
)

// client is what a request says about its firmware.
type client struct {
	pxe  bool      // option 60 starts with PXEClient
	http bool      // option 60 starts with HTTPClient (UEFI HTTP boot)
	ipxe bool      // iPXE is already running (user class "iPXE" or iPXE options)
	arch iana.Arch // option 93, or the Arch field of option 60
}

func classify(req *dhcpv4.DHCPv4) client {
	var c client
	vc := req.ClassIdentifier()
	c.pxe = strings.HasPrefix(vc, vendorPXE)
	c.http = strings.HasPrefix(vc, vendorHTTP)
	for _, uc := range req.UserClass() {
		if uc == "iPXE" {
			c.ipxe = true
		}
	}
	if req.Options.Has(dhcpv4.GenericOptionCode(175)) { // iPXE encapsulated options
		c.ipxe = true
	}
	if as := req.ClientArch(); len(as) > 0 {
		c.arch = as[0]
	} else if _, rest, ok := strings.Cut(vc, ":Arch:"); ok && len(rest) >= 5 {
		var n int
		if _, err := fmt.Sscanf(rest[:5], "%d", &n); err == nil {
			c.arch = iana.Arch(n)
		}
	}
	return c
}

// bootable reports whether the client asks for a network boot program.
func (c client) bootable() bool { return c.pxe || c.http || c.ipxe }

// boot is the network boot answer for one client.
type boot struct {
	file   string     // file field / option 67: TFTP name or URL
	tftp   netip.Addr // siaddr / option 66; zero for HTTP URLs
	vendor string     // option 60 to echo ("" for none)
}

// bootFor picks the boot program: the per-host iPXE script for iPXE (never
// iPXE again, which would loop), an iPXE binary by architecture for PXE
// firmware, or its URL for UEFI HTTP boot.
func bootFor(req *dhcpv4.DHCPv4, st state) (boot, bool) {
	c := classify(req)
	if !c.bootable() {
		return boot{}, false
	}
	base := st.Subnet.HTTPBase(st.ServerIP, st.HTTPPort)
	var b boot
	switch {
	case c.http:
		b.vendor = vendorHTTP
	case c.pxe:
		b.vendor = vendorPXE
	}
	if c.ipxe {
		b.file = ScriptURL(base, req.ClientHWAddr, st.BootNonce)
		return b, true
	}
	override := ""
	if st.Host != nil {
		override = st.Host.IPXEBinary
	}
	var name string
	switch c.arch {
	case iana.INTEL_X86PC:
		name = fileBIOS
	case iana.EFI_X86_64, iana.EFI_BC, iana.EFI_X86_64_HTTP:
		name = fileUEFI
		if override != "" {
			name = override
		}
	default:
		return boot{}, false // no iPXE build for this architecture
	}
	if c.http {
		b.file = base + "/ipxe/" + name
		return b, true
	}
	b.file, b.tftp = name, st.Subnet.TFTPAddr(st.ServerIP)
	return b, true
}

// ScriptURL is where iPXE fetches a machine's boot script:
// <http_base>/boot/<mac with dashes>.ipxe?nonce=<this exchange's nonce>.
func ScriptURL(base string, mac net.HardwareAddr, nonce string) string {
	u := base + "/boot/" + strings.ReplaceAll(mac.String(), ":", "-") + ".ipxe"
	if nonce != "" {
		u += "?nonce=" + nonce
	}
	return u
}

// pxeVendorOptions is option 43 for PXE clients: PXE_DISCOVERY_CONTROL (6) = 8,
// "boot the file named in this offer, no boot server discovery or menu".
var pxeVendorOptions = []byte{6, 1, 8, 255}

// reply builds the answer to req. It returns nil when st.Type is zero.
func reply(req *dhcpv4.DHCPv4, st state) (*dhcpv4.DHCPv4, error) {
	if st.Type == dhcpv4.MessageTypeNone {
		return nil, nil
	}
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(st.Type),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(st.ServerIP.AsSlice())),
	)
	if err != nil {
		return nil, fmt.Errorf("building reply: %w", err)
	}
	if st.Type == dhcpv4.MessageTypeNak {
		if st.NakMessage != "" {
			resp.UpdateOption(dhcpv4.OptMessage(st.NakMessage))
		}
		resp.SetBroadcast()
		return resp, nil
	}
	b, hasBoot := bootFor(req, st)
	if st.Proxy {
		// PXE spec 2.1 proxyDHCP: no address, vendor class echoed, boot file.
		if !hasBoot {
			return nil, nil
		}
		addBoot(resp, b, true)
		return resp, nil
	}
	if st.Inform {
		resp.ClientIPAddr = req.ClientIPAddr
	} else {
		resp.YourIPAddr = st.YourIP.AsSlice()
		lease := st.Subnet.Lease()
		if st.LeaseTime > 0 {
			lease = st.LeaseTime
		}
		resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(lease))
		resp.UpdateOption(dhcpv4.OptRenewTimeValue(lease / 2))
		resp.UpdateOption(dhcpv4.OptRebindingTimeValue(lease * 7 / 8))
	}
	prefix := st.Subnet.Prefix()
	resp.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(prefix.Bits(), 32)))
	resp.UpdateOption(dhcpv4.OptBroadcastAddress(broadcastAddr(prefix).AsSlice()))
	if r := st.Subnet.RouterAddr(); r.IsValid() {
		resp.UpdateOption(dhcpv4.OptRouter(r.AsSlice()))
	}
	if len(st.DNS) > 0 {
		resp.UpdateOption(dhcpv4.OptDNS(ips(st.DNS)...))
	}
	if st.Domain != "" {
		resp.UpdateOption(dhcpv4.OptDomainName(st.Domain))
	}
	if len(st.NTP) > 0 {
		resp.UpdateOption(dhcpv4.OptNTPServers(ips(st.NTP)...))
	}
	if len(st.Syslog) > 0 {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionLogServer, dhcpv4.IPs(ips(st.Syslog)).ToBytes()))
	}
	if st.Subnet.MTU > 0 {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU, dhcpv4.Uint16(st.Subnet.MTU).ToBytes()))
	}
	if st.Host != nil && st.Host.Role != store.EnrolledRole {
		resp.UpdateOption(dhcpv4.OptHostName(st.Host.Name))
	}
	if hasBoot {
		addBoot(resp, b, false)
	}
	return resp, nil
}

// addBoot writes the boot answer; proxy replies also mark themselves PXE.
func addBoot(resp *dhcpv4.DHCPv4, b boot, proxy bool) {
	if b.tftp.IsValid() {
		resp.ServerIPAddr = b.tftp.AsSlice()
		resp.UpdateOption(dhcpv4.OptTFTPServerName(b.tftp.String()))
	}
	if len(b.file) < 128 {
		resp.BootFileName = b.file
	}
	resp.UpdateOption(dhcpv4.OptBootFileName(b.file))
	vendor := b.vendor
	if proxy && vendor == "" {
		vendor = vendorPXE // iPXE accepts proxy offers only with PXEClient
	}
	if vendor != "" {
		resp.UpdateOption(dhcpv4.OptClassIdentifier(vendor))
	}
	if vendor == vendorPXE {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeVendorOptions))
	}
}

func ips(as []netip.Addr) []net.IP {
	out := make([]net.IP, len(as))
	for i, a := range as {
		out[i] = a.AsSlice()
	}
	return out
}

// broadcastAddr returns the last address of an IPv4 prefix.
func broadcastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}
