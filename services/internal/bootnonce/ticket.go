package bootnonce

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"
	"net"
	"net/netip"
	"time"
)

// TicketLifetime is how long a registration ticket is good: a person typing
// a machine's name at its console takes minutes, not the seconds a boot
// nonce lives. Each answer to the machine carries a fresh one, so a
// machine waiting for approval keeps asking as long as it needs.
const TicketLifetime = 30 * time.Minute

// ticketPurpose separates tickets from nonces under the same key: neither
// can stand in for the other.
const ticketPurpose = "kiln registration ticket v1"

// Layout of a decoded ticket: version, the IPv4 address, the Unix second
// it was minted, tag.
const (
	ticketVersion = 1
	ticketBodyLen = 1 + 4 + 4
	ticketRawLen  = ticketBodyLen + tagLen
)

// RegistrationTicket returns the ticket the registration form of the
// machine with mac, asking from addr, sends back with what was typed: it
// binds the request to that machine and address the way a nonce binds a
// script, but may be used again until it expires (a taken name is asked
// again; a waiting machine polls). A MAC that is not 6 bytes or an address
// that is not IPv4 gets "".
func (k *Key) RegistrationTicket(mac net.HardwareAddr, addr netip.Addr, now time.Time) string {
	if len(mac) != 6 || !addr.Is4() {
		return ""
	}
	var raw [ticketRawLen]byte
	raw[0] = ticketVersion
	a := addr.As4()
	copy(raw[1:5], a[:])
	binary.BigEndian.PutUint32(raw[5:9], uint32(now.Unix()))
	copy(raw[ticketBodyLen:], k.tagFor(ticketPurpose, raw[:ticketBodyLen], mac))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// CheckRegistrationTicket reports whether ticket was minted by k for mac
// and addr no longer than TicketLifetime before now: ErrMalformed,
// ErrForged, ErrOtherAddress or ErrExpired.
func (k *Key) CheckRegistrationTicket(ticket string, mac net.HardwareAddr, addr netip.Addr, now time.Time) error {
	if len(ticket) != base64.RawURLEncoding.EncodedLen(ticketRawLen) || len(mac) != 6 {
		return ErrMalformed
	}
	raw, err := base64.RawURLEncoding.DecodeString(ticket)
	if err != nil || len(raw) != ticketRawLen || raw[0] != ticketVersion {
		return ErrMalformed
	}
	if !hmac.Equal(raw[ticketBodyLen:], k.tagFor(ticketPurpose, raw[:ticketBodyLen], mac)) {
		return ErrForged
	}
	if !addr.Is4() || netip.AddrFrom4([4]byte(raw[1:5])) != addr {
		return ErrOtherAddress
	}
	minted := time.Unix(int64(binary.BigEndian.Uint32(raw[5:9])), 0)
	if now.Before(minted.Add(-time.Minute)) || now.After(minted.Add(TicketLifetime)) {
		return ErrExpired
	}
	return nil
}
