// Package nettest holds the network plane's tier-4 test: it boots the built
// image in QEMU with a config passed through fw_cfg (a management NIC on user
// networking, a provisioning NIC on a loopback dgram segment the test itself
// speaks raw Ethernet on) and checks that netconf configured both NICs and
// that the firewall accepts and drops what their roles say, on the wire and
// through the operator API's GET /api/v1/network (with a real login).
package nettest
