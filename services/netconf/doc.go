// Package netconf is the network plane's service: it configures kiln's own
// links from the config's network section — NICs matched by MAC (and renamed)
// or by name, VLANs, bridges, MTU, static IPv4/IPv6 addresses, static routes,
// a DHCPv4 client with renewal on upstream/management interfaces, and
// resolv.conf — and applies the firewall (package firewall) for it.
//
// The desired state is computed by a pure function, MakePlan(config,
// observed links) → Plan, and applied over rtnetlink; applying twice changes
// nothing (the second plan is empty). The service re-applies on every link
// or address event, so drift (an address removed by hand, a NIC that appears
// late) is repaired. Changes through the API run in try mode (Guard): they
// revert after a timeout unless confirmed, so an operator cannot lock
// themselves out.
package netconf
