package bootnonce

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

var (
	t0    = time.Unix(1_800_000_000, 0)
	macA  = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0a}
	macB  = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0b}
	addrA = netip.MustParseAddr("10.0.0.50")
	addrB = netip.MustParseAddr("10.0.0.51")
	xid1  = [4]byte{0xde, 0xad, 0xbe, 0xef}
)

func testKey(b byte) *Key { return NewKey(bytes.Repeat([]byte{b}, 32)) }

// TestRedeem: one table of what a nonce minted for (xid1, macA, addrA) at t0
// gives each redemption, each on a fresh Redeemer started at t0, after the
// nonces in before were redeemed (by macA from addrA at t0).
func TestRedeem(t *testing.T) {
	key := testKey(1)
	ex := Exchange{XID: xid1, MAC: macA, Addr: addrA}
	nonce := key.Mint(ex, t0)
	unbound := key.Mint(Exchange{XID: xid1, MAC: macA}, t0)
	tampered := []byte(nonce)
	tampered[3] ^= 1 // inside the xid: the tag no longer matches
	for _, tc := range []struct {
		name   string
		before []string
		nonce  string
		mac    net.HardwareAddr
		from   netip.Addr
		at     time.Time
		want   error
	}{
		{"valid", nil, nonce, macA, addrA, t0, nil},
		{"valid at its last second", nil, nonce, macA, addrA, t0.Add(Lifetime), nil},
		{"expired", nil, nonce, macA, addrA, t0.Add(Lifetime + time.Second), ErrExpired},
		{"reused", []string{nonce}, nonce, macA, addrA, t0.Add(time.Second), ErrUsed},
		{"the OFFER's nonce after the ACK's (one exchange)", []string{key.Mint(ex, t0.Add(300*time.Millisecond))}, nonce, macA, addrA, t0.Add(time.Second), ErrUsed},
		{"another exchange of the same machine", []string{key.Mint(Exchange{XID: [4]byte{1, 2, 3, 4}, MAC: macA, Addr: addrA}, t0)}, nonce, macA, addrA, t0, nil},
		{"the same xid after a reboot (iPXE seeds it from a timer)", []string{nonce}, key.Mint(ex, t0.Add(30*time.Second)), macA, addrA, t0.Add(31 * time.Second), nil},
		{"from another address", nil, nonce, macA, addrB, t0, ErrOtherAddress},
		{"IPv4-mapped requester is the same address", nil, nonce, macA, netip.AddrFrom16(addrA.As16()), t0, nil},
		{"for another MAC", nil, nonce, macB, addrA, t0, ErrForged},
		{"minted with another key", nil, testKey(2).Mint(ex, t0), macA, addrA, t0, ErrForged},
		{"tampered", nil, string(tampered), macA, addrA, t0, ErrForged},
		{"empty", nil, "", macA, addrA, t0, ErrMalformed},
		{"not base64url", nil, strings.Repeat("*", EncodedLen), macA, addrA, t0, ErrMalformed},
		{"too long", nil, nonce + "A", macA, addrA, t0, ErrMalformed},
		{"the host's token instead", nil, "0123456789abcdef0123456789abcdef", macA, addrA, t0, ErrMalformed},
		{"not bound to an address (proxy offer): any address", nil, unbound, macA, addrB, t0, nil},
		{"minted before the redeemer started", nil, key.Mint(ex, t0.Add(-time.Second)), macA, addrA, t0, ErrStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRedeemer(key, 16, t0)
			for _, b := range tc.before {
				if _, err := r.Redeem(b, macA, addrA, t0); err != nil {
					t.Fatalf("Redeem(earlier nonce) = %v", err)
				}
			}
			if _, err := r.Check(tc.nonce, tc.mac, tc.from, tc.at); !errors.Is(err, tc.want) {
				t.Errorf("Check = %v, want %v", err, tc.want)
			}
			if _, err := r.Redeem(tc.nonce, tc.mac, tc.from, tc.at); !errors.Is(err, tc.want) {
				t.Errorf("Redeem = %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				return
			}
			if _, err := r.Redeem(tc.nonce, tc.mac, tc.from, tc.at); !errors.Is(err, ErrUsed) {
				t.Errorf("second Redeem = %v, want %v", err, ErrUsed)
			}
		})
	}
}

// TestCheckDoesNotUseUp: refusals for other reasons (the caller's own
// checks) leave the nonce to its machine, and so do attempts from another
// address.
func TestCheckDoesNotUseUp(t *testing.T) {
	key := testKey(1)
	r := NewRedeemer(key, 16, t0)
	nonce := key.Mint(Exchange{XID: xid1, MAC: macA, Addr: addrA}, t0)
	for range 3 {
		if _, err := r.Check(nonce, macA, addrA, t0); err != nil {
			t.Fatalf("Check = %v", err)
		}
		if _, err := r.Redeem(nonce, macA, addrB, t0); !errors.Is(err, ErrOtherAddress) {
			t.Fatalf("Redeem from another address = %v, want %v", err, ErrOtherAddress)
		}
	}
	if _, err := r.Redeem(nonce, macA, addrA, t0); err != nil {
		t.Errorf("Redeem by its machine after the others = %v, want it served", err)
	}
}

// TestTicket: what a nonce says in the clear, and that it is what was minted.
func TestTicket(t *testing.T) {
	key := testKey(1)
	n := key.Mint(Exchange{XID: xid1, MAC: macA, Addr: addrA}, t0.Add(300*time.Millisecond))
	if len(n) != EncodedLen {
		t.Fatalf("len(Mint) = %d, want %d", len(n), EncodedLen)
	}
	tk, err := key.Open(n, macA)
	if err != nil {
		t.Fatal(err)
	}
	want := Ticket{XID: xid1, MAC: [6]byte(macA), Addr: addrA, Minted: t0, Expires: t0.Add(Lifetime)}
	if tk != want {
		t.Errorf("Open(Mint) = %+v, want %+v (minted rounded down to the second)", tk, want)
	}
	if got := key.Mint(Exchange{XID: xid1, MAC: macA[:5]}, t0); got != "" {
		t.Errorf("Mint(5-byte MAC) = %q, want no nonce", got)
	}
	if s := tk.String(); !strings.Contains(s, "deadbeef") || !strings.Contains(s, "10.0.0.50") {
		t.Errorf("Ticket.String() = %q, want the xid and the address", s)
	}
}

// TestTableBounded floods a small Redeemer with valid nonces of made-up
// exchanges: the table never exceeds its bound, and no nonce it forgot can
// be replayed — nonces expiring no later than a forgotten one are refused.
func TestTableBounded(t *testing.T) {
	key := testKey(1)
	const max = 64
	r := NewRedeemer(key, max, t0)
	var minted []string
	for i := range 10 * max {
		var xid [4]byte
		binary.BigEndian.PutUint32(xid[:], uint32(i))
		now := t0.Add(time.Duration(i) * 10 * time.Millisecond) // 100 a second: all within one Lifetime
		n := key.Mint(Exchange{XID: xid, MAC: macA, Addr: addrA}, now)
		if _, err := r.Redeem(n, macA, addrA, now); err != nil && !errors.Is(err, ErrStale) {
			t.Fatalf("Redeem(nonce %d) = %v", i, err)
		}
		if got := r.Len(); got > max {
			t.Fatalf("after %d redemptions the table holds %d, want at most %d", i+1, got, max)
		}
		minted = append(minted, n)
	}
	now := t0.Add(10 * max * 10 * time.Millisecond)
	for i, n := range minted {
		if _, err := r.Redeem(n, macA, addrA, now); err == nil {
			t.Fatalf("replaying nonce %d of %d succeeded; want every one refused", i, len(minted))
		}
	}
	// Once the flood's nonces expire, the table empties as it is used.
	later := now.Add(Lifetime + 2*time.Second)
	if _, err := r.Redeem(key.Mint(Exchange{XID: xid1, MAC: macB, Addr: addrB}, later), macB, addrB, later); err != nil {
		t.Errorf("Redeem after the flood expired = %v, want served", err)
	}
	if got := r.Len(); got != 1 {
		t.Errorf("table after the flood expired holds %d, want 1", got)
	}
}

// TestLoadKey: the DHCP and HTTP boot services, loading from one state
// directory, agree on the nonce key, which is not the sealing key itself.
func TestLoadKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "secrets.key")
	a, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	ex := Exchange{XID: xid1, MAC: macA, Addr: addrA}
	n := a.Mint(ex, t0)
	if _, err := b.Open(n, macA); err != nil {
		t.Errorf("a nonce minted by one service does not open in the other: %v", err)
	}
	seal, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(seal, a.k) {
		t.Error("the nonce key is the sealing key; want a derived one")
	}
	if _, err := NewKey(seal).Open(n, macA); !errors.Is(err, ErrForged) {
		t.Errorf("Open under the raw sealing key = %v, want %v", err, ErrForged)
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(path); err == nil || !strings.Contains(err.Error(), "want 32") {
		t.Errorf("LoadKey(damaged key) = %v, want an error saying the size is wrong", err)
	}
}

// BenchmarkRedeemFlood mints and redeems nonces of made-up exchanges, 1000
// a second, against a full table (every redemption forgets the oldest), and
// reports the table's heap size at DefaultMaxUsed.
func BenchmarkRedeemFlood(b *testing.B) {
	key := testKey(1)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := NewRedeemer(key, DefaultMaxUsed, t0)
	redeem := func(i int) error {
		var xid [4]byte
		binary.BigEndian.PutUint32(xid[:], uint32(i))
		now := t0.Add(time.Duration(i) * time.Millisecond)
		_, err := r.Redeem(key.Mint(Exchange{XID: xid, MAC: macA, Addr: addrA}, now), macA, addrA, now)
		return err
	}
	for i := range DefaultMaxUsed {
		redeem(i)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	table := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 10)
	refused := 0
	b.ResetTimer()
	for i := range b.N {
		if redeem(DefaultMaxUsed+i) != nil {
			refused++
		}
	}
	b.StopTimer()
	if r.Len() > DefaultMaxUsed {
		b.Fatalf("table holds %d, want at most %d", r.Len(), DefaultMaxUsed)
	}
	b.ReportMetric(table, "table-KiB")
	b.ReportMetric(float64(refused)/float64(b.N), "refused/op")
}
