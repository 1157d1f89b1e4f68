package ntp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// chronyRequest is the client request Debian's chronyd 4.3 -Q sent to a
// UDP socket: NTPv4, mode 3, poll 6, precision byte 0x20, every field zero
// but the transmit timestamp, which is random (chrony does not disclose its
// clock in requests).
const chronyRequest = "230006200000000000000000000000000000000000000000000000000000000000000000000000006b5892cbfb46be41"

func TestParse(t *testing.T) {
	b, _ := hex.DecodeString(chronyRequest)
	for _, tc := range []struct {
		name string
		in   []byte
		want Packet
		err  error
	}{
		{"chrony request", b, Packet{Version: 4, Mode: ModeClient, Poll: 6, Precision: 32, Transmit: 0x6b5892cbfb46be41}, nil},
		{"short", b[:47], Packet{}, ErrShort},
		{"empty", nil, Packet{}, ErrShort},
		{"extension fields ignored", append(bytes.Clone(b), make([]byte, 20)...), Packet{Version: 4, Mode: ModeClient, Poll: 6, Precision: 32, Transmit: 0x6b5892cbfb46be41}, nil},
		{"server reply", mustHex(t, "1c0203e9000000100000002a0a000001"+"e7a1b2c300000000"+"e7a1b2c480000000"+"e7a1b2c500000000"+"e7a1b2c600000001"),
			Packet{Leap: 0, Version: 3, Mode: ModeServer, Stratum: 2, Poll: 3, Precision: -23, RootDelay: 0x10, RootDispersion: 0x2a,
				RefID: [4]byte{10, 0, 0, 1}, Reference: 0xe7a1b2c300000000, Origin: 0xe7a1b2c480000000, Receive: 0xe7a1b2c500000000, Transmit: 0xe7a1b2c600000001}, nil},
		{"unsynchronized", mustHex(t, "e4100000"+"00000000000000004e4f4e45"+string(bytes.Repeat([]byte("0"), 64))),
			Packet{Leap: LeapUnsynchronized, Version: 4, Mode: ModeServer, Stratum: 16, RefID: [4]byte{'N', 'O', 'N', 'E'}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Parse() error = %v, want %v", err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse() (-want +got):\n%s", diff)
			}
			if err == nil {
				if enc := got.Append(nil); !bytes.Equal(enc, tc.in[:HeaderLen]) {
					t.Errorf("Append(Parse(x)) = %x, want %x", enc, tc.in[:HeaderLen])
				}
			}
		})
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   time.Time
		want Time
	}{
		{"unix epoch", time.Unix(0, 0), Time(ntpEpochOffset) << 32},
		{"half second", time.Unix(0, 5e8), Time(ntpEpochOffset)<<32 | 0x80000000},
		{"era 1 starts 2036-02-07T06:28:16Z", time.Date(2036, 2, 7, 6, 28, 16, 0, time.UTC), 0},
		{"era 1 plus a second", time.Date(2036, 2, 7, 6, 28, 17, 0, time.UTC), 1 << 32},
		{"zero time is unknown", time.Time{}, 0},
	} {
		if got := TimeOf(tc.in); got != tc.want {
			t.Errorf("%s: TimeOf(%v) = %#x, want %#x", tc.name, tc.in, got, tc.want)
		}
	}
	// Differences hold across the era boundary.
	before, after := time.Date(2036, 2, 7, 6, 28, 15, 0, time.UTC), time.Date(2036, 2, 7, 6, 28, 17, 250e6, time.UTC)
	if got := TimeOf(after).Sub(TimeOf(before)); got != 2250*time.Millisecond {
		t.Errorf("Sub across era 0/1 = %v, want 2.25s", got)
	}
	if got := TimeOf(before).Sub(TimeOf(after)); got != -2250*time.Millisecond {
		t.Errorf("Sub across era 1/0 = %v, want -2.25s", got)
	}
	now := time.Date(2026, 12, 7, 15, 0, 0, 123456789, time.UTC)
	if got := TimeOf(now).In(now.Add(time.Hour)); got.Sub(now).Abs() > time.Nanosecond {
		t.Errorf("TimeOf(%v).In(an hour later) = %v", now, got)
	}
	for _, tc := range []struct {
		in   time.Duration
		want Short
	}{
		{0, 0}, {-time.Second, 0}, {time.Second, 0x10000}, {1500 * time.Millisecond, 0x18000}, {100000 * time.Second, 0xffffffff},
	} {
		if got := ShortOf(tc.in); got != tc.want {
			t.Errorf("ShortOf(%v) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
	if got := Short(0x18000).Duration(); got != 1500*time.Millisecond {
		t.Errorf("Short(0x18000).Duration() = %v, want 1.5s", got)
	}
}

// FuzzParse: any datagram parses or fails cleanly, a parsed header encodes
// back to the same 48 bytes, and the server's answer to it is well formed.
func FuzzParse(f *testing.F) {
	f.Add(mustHexF(chronyRequest))
	f.Add(make([]byte, 48))
	f.Add([]byte{0x17, 0, 3, 0x2a})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			if len(b) >= HeaderLen {
				t.Fatalf("Parse(%d bytes) = %v", len(b), err)
			}
			return
		}
		if enc := p.Append(nil); !bytes.Equal(enc, b[:HeaderLen]) {
			t.Fatalf("Append(Parse(%x)) = %x", b[:HeaderLen], enc)
		}
		for _, st := range []Status{{}, {Synced: true, Stratum: 3}} {
			resp, ok := reply(p, st, 42)
			if !ok {
				continue
			}
			if resp.Mode != ModeServer || resp.Version != p.Version || resp.Origin != p.Transmit || len(resp.Append(nil)) != HeaderLen {
				t.Fatalf("reply(%+v) = %+v", p, resp)
			}
		}
	})
}

func mustHexF(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
