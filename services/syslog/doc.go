// Package syslog is the appliance's log server for the provisioning LAN:
// it receives RFC 3164 and RFC 5424 messages over UDP and TCP (RFC 6587
// framing), attributes each to a host by its source address or lease,
// groups them into boot sessions (one per DHCP boot of that machine) and
// stores them with size and age limits.
package syslog
