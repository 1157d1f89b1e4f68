// Package firewall owns kiln's nftables ruleset: one inet table "kiln",
// rendered from the appliance config by a pure function (Render) and
// replaced atomically in one netlink transaction (Firewall.Apply), plus the
// ban sets the management API feeds through the Banner interface.
//
// The ruleset accepts, per interface role: management — the API/UI ports;
// provisioning — DHCP, proxyDHCP, DNS, TFTP, HTTP boot, NFS, iSCSI and syslog
// (config.ProvisioningPorts, with the configured DNS, TFTP and HTTP boot ports); upstream — nothing new. Everywhere: loopback,
// replies to connections kiln opened (TFTP data flows this way: kiln's server
// sends from a new port, and the client's acknowledgements are replies to
// that), IPv6 neighbour discovery and rate-limited ICMP echo. Everything else
// is counted and dropped. With firewall.masquerade.hosts, the listed
// provisioning hosts may reach the upstream network through source NAT (with
// the conntrack TFTP helper so TFTP works through it).
//
// The first input rule carries the ruleset's hash in its comment; applying a
// ruleset whose hash is already in the kernel changes nothing, so repeated
// applies keep counters and bans. A replacement carries live bans over.
package firewall
