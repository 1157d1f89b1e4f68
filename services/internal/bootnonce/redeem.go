package bootnonce

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultMaxUsed bounds a Redeemer's table: 8192 boots within two minutes
// is far beyond a provisioning LAN's real rate, and the full table takes
// about 1.1 MiB (BenchmarkRedeemFlood).
const DefaultMaxUsed = 8192

// exchangeKey is a redeemed exchange: the client's MAC and the xid.
type exchangeKey [10]byte

type redemption struct {
	key exchangeKey
	at  time.Time
}

// Redeemer redeems nonces once per exchange: it remembers when it served
// each exchange (MAC and xid) and refuses that exchange's nonces minted
// until then — the OFFER's and the ACK's nonce serve one script together,
// and a nonce is never served twice. A nonce minted later is a new exchange
// even with the same xid: iPXE seeds its xid from a timer, and a machine
// that reboots may well send the same one.
//
// Its table is bounded (clients choose the xids). An entry stays until
// every nonce it refuses has expired; when the table is full the oldest
// entry is forgotten and every nonce minted no later than that redemption
// is refused from then on: a forgotten nonce can never be replayed, and
// under a flood the cost is that nonces live shorter, never that one works
// twice. Likewise nonces minted before the Redeemer was made (before the
// service restarted) are refused: it cannot know whether they were used.
type Redeemer struct {
	key       *Key
	max       int
	notBefore time.Time // nonces minted in an earlier second are refused

	// mu guards the fields below.
	mu sync.Mutex
	// used maps each redeemed exchange to when it was last redeemed.
	used map[exchangeKey]time.Time
	// ring holds the redemptions in order: n of them from head, at most max.
	ring    []redemption
	head, n int
	// forgotten is the latest redemption dropped from a full table: nonces
	// minted no later are refused.
	forgotten time.Time
}

// NewRedeemer returns a Redeemer of key's nonces remembering at most max
// exchanges (DefaultMaxUsed when max <= 0). Nonces minted before started
// (in an earlier second) are refused.
func NewRedeemer(key *Key, max int, started time.Time) *Redeemer {
	if max <= 0 {
		max = DefaultMaxUsed
	}
	return &Redeemer{key: key, max: max, notBefore: started.Truncate(time.Second), used: map[exchangeKey]time.Time{}, ring: make([]redemption, max)}
}

// Check reports whether nonce may be redeemed for mac by client at now,
// without redeeming it: so a refusal by another check (the requester's
// lease) does not use the nonce up.
func (r *Redeemer) Check(nonce string, mac net.HardwareAddr, client netip.Addr, now time.Time) (Ticket, error) {
	t, err := r.valid(nonce, mac, client, now)
	if err != nil {
		return t, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return t, r.usable(t)
}

// Redeem is Check, then marks the nonce's exchange served at now.
func (r *Redeemer) Redeem(nonce string, mac net.HardwareAddr, client netip.Addr, now time.Time) (Ticket, error) {
	t, err := r.valid(nonce, mac, client, now)
	if err != nil {
		return t, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expire(now)
	if err := r.usable(t); err != nil {
		return t, err
	}
	if r.n == r.max {
		if old := r.pop(); old.at.After(r.forgotten) {
			r.forgotten = old.at
		}
	}
	k := keyOf(t)
	r.used[k] = now
	r.ring[(r.head+r.n)%r.max] = redemption{k, now}
	r.n++
	return t, nil
}

// Len is how many exchanges the table holds.
func (r *Redeemer) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.used)
}

// valid checks what needs no table: the tag, the clock, the address.
func (r *Redeemer) valid(nonce string, mac net.HardwareAddr, client netip.Addr, now time.Time) (Ticket, error) {
	t, err := r.key.Open(nonce, mac)
	if err != nil {
		return t, err
	}
	if now.After(t.Expires) {
		return t, ErrExpired
	}
	if t.Minted.Before(r.notBefore) {
		return t, ErrStale
	}
	if t.Addr.IsValid() && t.Addr != client.Unmap() {
		return t, ErrOtherAddress
	}
	return t, nil
}

// usable checks the table; r.mu is held.
func (r *Redeemer) usable(t Ticket) error {
	if !t.Minted.After(r.forgotten) {
		return ErrStale
	}
	if at, ok := r.used[keyOf(t)]; ok && !t.Minted.After(at) {
		return ErrUsed
	}
	return nil
}

// expire drops the redemptions at the head of the ring that refuse no
// unexpired nonce any more (those were minted before the redemption, so
// they expire within Lifetime of it); r.mu is held.
func (r *Redeemer) expire(now time.Time) {
	for r.n > 0 && now.After(r.ring[r.head].at.Add(Lifetime+time.Second)) {
		r.pop()
	}
}

// pop removes the oldest redemption; r.mu is held and r.n > 0.
func (r *Redeemer) pop() redemption {
	old := r.ring[r.head]
	r.ring[r.head] = redemption{}
	r.head = (r.head + 1) % r.max
	r.n--
	if at, ok := r.used[old.key]; ok && at.Equal(old.at) {
		delete(r.used, old.key)
	}
	return old
}

func keyOf(t Ticket) exchangeKey {
	var k exchangeKey
	copy(k[:6], t.MAC[:])
	copy(k[6:], t.XID[:])
	return k
}
