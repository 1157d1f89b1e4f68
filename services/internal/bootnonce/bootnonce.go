// Package bootnonce mints and redeems the short-lived, single-use nonces that
// stand in for a host's secret in the boot script URL a DHCP reply gives
// iPXE: the DHCP service mints one per exchange, the HTTP boot service
// redeems it once, from the address it was minted for, before it expires.
//
// A nonce is a MAC (HMAC-SHA256, cut to 128 bits) over the exchange — the
// DHCP transaction id, the client's MAC, the address the reply hands out —
// and the second it was minted, under a key both services derive from the
// appliance's sealing key. So the services share no table: anyone holding
// the key can check a nonce, nobody without it can make one, and a nonce
// names its exchange in the clear (xid, address, time; the MAC is in the
// URL's path). Single use needs memory only on the redeeming side: a
// Redeemer remembers the exchanges it redeemed until their nonces expire,
// in a bounded table.
package bootnonce

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"kiln.dev/kiln/services/internal/sealkey"
)

// Lifetime is how long a nonce may be redeemed after it was minted: iPXE
// fetches its script within seconds of the DHCP ACK, a slow TCG guest within
// a few more; a machine that reboots does DHCP again and gets a fresh one.
const Lifetime = 2 * time.Minute

// purpose names the key derived from the sealing key.
const purpose = "kiln boot nonce v1"

// Layout of a decoded nonce: version, xid, IPv4 address (0.0.0.0: not bound
// to one), the Unix second it was minted, tag.
const (
	version = 1
	tagLen  = 16
	bodyLen = 1 + 4 + 4 + 4
	rawLen  = bodyLen + tagLen
)

// EncodedLen is a nonce's length in a URL (unpadded base64url).
var EncodedLen = base64.RawURLEncoding.EncodedLen(rawLen)

// Errors Check and Redeem return; httpboot names them in its boot events.
var (
	ErrMalformed    = errors.New("malformed nonce")
	ErrForged       = errors.New("nonce not minted by this appliance for this MAC")
	ErrExpired      = errors.New("nonce expired")
	ErrOtherAddress = errors.New("nonce redeemed from another address")
	ErrUsed         = errors.New("nonce already used")
	ErrStale        = errors.New("nonce older than this service's memory of used nonces")
)

// Exchange identifies the DHCP exchange a nonce is minted for.
type Exchange struct {
	XID [4]byte
	MAC net.HardwareAddr // 6 bytes (Ethernet)
	// Addr is the IPv4 address the reply hands out (yiaddr) or the client
	// already has (ciaddr). Invalid: none is known — a proxyDHCP offer to a
	// client that has no address yet — and the redeemer must identify the
	// requester some other way.
	Addr netip.Addr
}

// Key mints and checks nonces.
type Key struct{ k []byte }

// NewKey makes a Key from 32 bytes of secret (tests; services use LoadKey).
func NewKey(secret []byte) *Key { return &Key{k: append([]byte(nil), secret...)} }

// LoadKey derives the nonce key from the sealing key at sealKeyPath
// (store.KeyFileName in the state directory), creating that the first time.
func LoadKey(sealKeyPath string) (*Key, error) {
	k, err := sealkey.Derived(sealKeyPath, "restore it from the backup of the data partition (boot nonces need only a key both the DHCP and HTTP boot services share)", purpose)
	if err != nil {
		return nil, err
	}
	return &Key{k: k}, nil
}

// Ticket is what a valid nonce says about its exchange.
type Ticket struct {
	XID  [4]byte
	MAC  [6]byte
	Addr netip.Addr // invalid: not bound to an address
	// Minted is when the nonce was made, to the second (rounded down);
	// it may be redeemed until Expires, Lifetime later.
	Minted, Expires time.Time
}

// Mint returns the nonce for ex minted at now, valid for Lifetime. A MAC
// that is not 6 bytes gets "" (no nonce, so no script).
func (k *Key) Mint(ex Exchange, now time.Time) string {
	if len(ex.MAC) != 6 {
		return ""
	}
	var raw [rawLen]byte
	raw[0] = version
	copy(raw[1:5], ex.XID[:])
	if ex.Addr.Is4() {
		a := ex.Addr.As4()
		copy(raw[5:9], a[:])
	}
	binary.BigEndian.PutUint32(raw[9:13], uint32(now.Unix()))
	copy(raw[bodyLen:], k.tag(raw[:bodyLen], ex.MAC))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

func (k *Key) tag(body []byte, mac net.HardwareAddr) []byte { return k.tagFor(purpose, body, mac) }

// tagFor is the HMAC of body and mac for one purpose (nonces, tickets).
func (k *Key) tagFor(purpose string, body []byte, mac net.HardwareAddr) []byte {
	m := hmac.New(sha256.New, k.k)
	m.Write([]byte(purpose))
	m.Write(body)
	m.Write(mac)
	return m.Sum(nil)[:tagLen]
}

// Open checks that nonce was minted with k for mac and returns its ticket.
// It does not look at the clock or the requester: see Redeemer.
func (k *Key) Open(nonce string, mac net.HardwareAddr) (Ticket, error) {
	if len(nonce) != EncodedLen || len(mac) != 6 {
		return Ticket{}, ErrMalformed
	}
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != rawLen || raw[0] != version {
		return Ticket{}, ErrMalformed
	}
	if !hmac.Equal(raw[bodyLen:], k.tag(raw[:bodyLen], mac)) {
		return Ticket{}, ErrForged
	}
	var t Ticket
	copy(t.XID[:], raw[1:5])
	copy(t.MAC[:], mac)
	if a := netip.AddrFrom4([4]byte(raw[5:9])); !a.IsUnspecified() {
		t.Addr = a
	}
	t.Minted = time.Unix(int64(binary.BigEndian.Uint32(raw[9:13])), 0)
	t.Expires = t.Minted.Add(Lifetime)
	return t, nil
}

// String names the exchange for logs and events (nothing secret in it).
func (t Ticket) String() string {
	addr := "any address"
	if t.Addr.IsValid() {
		addr = t.Addr.String()
	}
	return fmt.Sprintf("xid %x for %s, expires %s", t.XID, addr, t.Expires.UTC().Format(time.TimeOnly))
}
