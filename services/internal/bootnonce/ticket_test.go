package bootnonce

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestRegistrationTicket(t *testing.T) {
	k := NewKey(bytes.Repeat([]byte{7}, 32))
	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	other := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}
	addr := netip.MustParseAddr("10.0.0.5")
	t0 := time.Unix(1_700_000_000, 0)
	tk := k.RegistrationTicket(mac, addr, t0)
	nonce := k.Mint(Exchange{XID: [4]byte{1}, MAC: mac, Addr: addr}, t0)
	for _, tc := range []struct {
		name   string
		ticket string
		mac    net.HardwareAddr
		addr   string
		at     time.Duration
		want   error
	}{
		{"fresh", tk, mac, "10.0.0.5", 0, nil},
		{"used again later", tk, mac, "10.0.0.5", TicketLifetime, nil},
		{"expired", tk, mac, "10.0.0.5", TicketLifetime + time.Second, ErrExpired},
		{"from the future", tk, mac, "10.0.0.5", -2 * time.Minute, ErrExpired},
		{"another machine", tk, other, "10.0.0.5", 0, ErrForged},
		{"another address", tk, mac, "10.0.0.6", 0, ErrOtherAddress},
		{"a boot nonce", nonce, mac, "10.0.0.5", 0, ErrMalformed},
		{"another key", NewKey(bytes.Repeat([]byte{8}, 32)).RegistrationTicket(mac, addr, t0), mac, "10.0.0.5", 0, ErrForged},
		{"garbage", "!!!!", mac, "10.0.0.5", 0, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := k.CheckRegistrationTicket(tc.ticket, tc.mac, netip.MustParseAddr(tc.addr), t0.Add(tc.at))
			if !errors.Is(err, tc.want) {
				t.Errorf("CheckRegistrationTicket(%s) = %v, want %v", tc.name, err, tc.want)
			}
		})
	}
	if got := k.RegistrationTicket(mac, netip.MustParseAddr("fe80::1"), t0); got != "" {
		t.Errorf("RegistrationTicket for IPv6 = %q, want \"\"", got)
	}
}
