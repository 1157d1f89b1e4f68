// Package dhcp is kiln's DHCPv4 service: it hands out addresses on the
// provisioning subnets and tells network-booting machines what to boot.
//
// # Modes
//
// Each subnet of the config's provisioning section has a mode:
//
//   - authoritative: kiln is the subnet's DHCP server. A host's reserved
//     address (store.Host.IPv4) comes first; everyone else gets a pool address
//     (its own lease, the one it asks for, the lowest never-used one, then
//     the longest-expired one), probed with ARP (ping through a relay) before
//     it is offered unless it is the client's own unexpired lease or the
//     subnet sets conflict_probe: false (an address that answers is set
//     aside for declineHold, as is an address its own client DECLINEs; a
//     DECLINE from any other MAC is ignored, RFC 2131 4.3.3). Choosing costs a few indexed lookups: the
//     subnet's leases are read in full only at start and when no never-used
//     address is left. Unknown clients are enrolled as new hosts
//     ("unknown-525400aabbcc") when they complete an exchange (REQUEST, or
//     the PXE boot server's port 4011), never for a DISCOVER: at most 5 a
//     second (burst 50) and 4096 in all; past that they still get
//     addresses. A machine the operator has not registered (no host, or an
//     unknown-* one) gets a first lease of at most 10 minutes and the
//     subnet's lease time only when it renews at T1 (half of it): made-up
//     MACs that complete a REQUEST give their addresses back in minutes, not
//     12 hours. Offers to MACs without a host row are held 10 s (a known
//     client's a minute), and when the pool has nothing else left a
//     registered machine takes over the oldest of them: a flood of made-up
//     MACs cannot lock registered machines out. Leases live in the store,
//     so a restart keeps them. Before serving, kiln broadcasts a DISCOVER (repeated every second)
//     and listens 4 s for another server's OFFER — dnsmasq answers a new
//     client only after a 3 s ping check: with foreign_dhcp: refuse (the default) Run
//     fails with ErrForeignServer and a message naming the server and the fix.
//   - proxy: another server hands out addresses; kiln answers only PXE and
//     HTTP-boot clients, with boot information and no address (proxyDHCP, PXE
//     spec 2.1), on port 67 and on the boot-server port 4011.
//   - off: ignored.
//
// Requests with giaddr set come through a relay: the subnet is the one
// containing giaddr and the reply goes to giaddr:67. Option 82 (circuit-id,
// remote-id) is recorded with the lease and the boot events, and finds a host
// whose CircuitID/RemoteID match when its MAC is not known.
//
// # Boot files
//
//	client                               file
//	PXE, arch 0 (BIOS)                   undionly.kpxe over TFTP
//	PXE, arch 7 or 9 (x86-64 UEFI)       ipxe.efi over TFTP, or the host's IPXEBinary (snponly.efi)
//	HTTPClient, arch 16 (UEFI HTTP)      <http_base>/ipxe/ipxe.efi (or IPXEBinary), option 60 HTTPClient
//	iPXE (user class "iPXE")             <http_base>/boot/<mac with dashes>.ipxe?nonce=<this exchange's nonce>
//
// iPXE is recognised by its user class so it gets a script and never iPXE
// again (no chainload loop). The script URL of a known host carries a
// single-use nonce (package bootnonce) bound to the exchange's xid, the
// client's MAC and the address the reply hands out (the client's own
// ciaddr at port 4011; none in a proxy offer to a client without one),
// valid 2 minutes, under a key derived from the sealing key in the state
// directory; the HTTP boot service redeems it once. The host's long-lived
// token never goes into a DHCP packet: replies are broadcast. The firmware's
// PXE exchange only gets the iPXE binary; iPXE's own DHCP (a new xid) gets
// the nonce, and a retransmitted DISCOVER or REQUEST of that exchange gets a
// fresh one for the same exchange — only one of them is served. siaddr and option 66 name the TFTP server
// (boot.tftp_server, default kiln's address); PXE offers carry option 60
// PXEClient and option 43 with PXE_DISCOVERY_CONTROL=8 (boot the named file).
//
// # Structure
//
// The handler (handle) does the impure work — looking up and enrolling hosts,
// choosing and probing addresses, writing leases and boot events — and puts
// its decisions in a state; reply(req, state) builds the packet and is pure,
// which the golden tests in testdata/ pin down. Packets are read by one
// goroutine per socket and handled by a fixed pool of workers; a MAC always
// maps to the same worker (its messages are handled in order) and has a token
// bucket rate limit; the limiter tracks at most 16384 MACs and evicts the
// least recently seen (O(1) a packet, whatever a flood sends). DISCOVERs
// are answered with broadcasts, like most servers that do not write ARP
// entries.
package dhcp
