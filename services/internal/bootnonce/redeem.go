package bootnonce

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultMaxUsed bounds a Redeemer's table: 8192 boots within two minutes
// is far beyond a provisioning LAN's real rate, and the table stays under
// 1 MiB.
const DefaultMaxUsed = 8192

// exchangeKey is a redeemed exchange: the client's MAC and the xid.
type exchangeKey [10]byte

type redeemed struct {
	key     exchangeKey
	expires time.Time
}

// Redeemer redeems nonces once: it remembers the exchanges it redeemed
// until their nonces expire. A nonce counts for its exchange, so of the
// OFFER's and the ACK's nonce (same xid, MAC and address) only one is
// served.
//
// Its table is bounded (clients choose the xids). When it is full the
// oldest redemption is forgotten and every nonce expiring no later than
// that one is refused from then on: a forgotten nonce can never be replayed,
// and under a flood the cost is that nonces live shorter, never that one
// works twice. Likewise nonces minted before the Redeemer was made (before
// the service restarted) are refused: it cannot know whether they were used.
type Redeemer struct {
	key       *Key
	max       int
	notBefore int64 // Unix second: nonces minted earlier are refused

	// mu guards the fields below.
	mu sync.Mutex
	// used maps each redeemed exchange to its nonce's expiry.
	used map[exchangeKey]time.Time
	// ring holds the redemptions in order: n of them from head, at most max.
	ring    []redeemed
	head, n int
	// forgotten is the latest expiry among redemptions dropped from a full
	// table; nonces expiring at or before it are refused.
	forgotten time.Time
}

// NewRedeemer returns a Redeemer of key's nonces remembering at most max
// exchanges (DefaultMaxUsed when max <= 0). Nonces minted before started
// (in an earlier second) are refused.
func NewRedeemer(key *Key, max int, started time.Time) *Redeemer {
	if max <= 0 {
		max = DefaultMaxUsed
	}
	return &Redeemer{key: key, max: max, notBefore: started.Unix(), used: map[exchangeKey]time.Time{}, ring: make([]redeemed, max)}
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

// Redeem is Check, then marks the nonce's exchange used.
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
		old := r.pop()
		if old.expires.After(r.forgotten) {
			r.forgotten = old.expires
		}
	}
	k := keyOf(t)
	r.used[k] = t.Expires
	r.ring[(r.head+r.n)%r.max] = redeemed{k, t.Expires}
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
	if t.Expires.Add(-Lifetime).Unix() < r.notBefore {
		return t, ErrStale
	}
	if t.Addr.IsValid() && t.Addr != client.Unmap() {
		return t, ErrOtherAddress
	}
	return t, nil
}

// usable checks the table; r.mu is held.
func (r *Redeemer) usable(t Ticket) error {
	if !t.Expires.After(r.forgotten) {
		return ErrStale
	}
	if _, ok := r.used[keyOf(t)]; ok {
		return ErrUsed
	}
	return nil
}

// expire drops the redemptions at the head of the ring whose nonces have
// expired (they cannot be redeemed again anyway); r.mu is held.
func (r *Redeemer) expire(now time.Time) {
	for r.n > 0 && now.After(r.ring[r.head].expires) {
		r.pop()
	}
}

// pop removes the oldest redemption; r.mu is held and r.n > 0.
func (r *Redeemer) pop() redeemed {
	old := r.ring[r.head]
	r.ring[r.head] = redeemed{}
	r.head = (r.head + 1) % r.max
	r.n--
	if exp, ok := r.used[old.key]; ok && exp.Equal(old.expires) {
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
