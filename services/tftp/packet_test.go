package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRequest(t *testing.T) {
	wrq := rawRRQ("up.bin", "blksize", "1428")
	wrq[1] = opWRQ
	for _, tc := range []struct {
		name string
		in   []byte
		want request
		err  error
	}{
		{"plain", rawRRQ("ipxe.efi"), request{op: opRRQ, filename: "ipxe.efi", mode: "octet"}, nil},
		{"mode case", append(append([]byte{0, 1}, "a\x00NetASCII"...), 0), request{op: opRRQ, filename: "a", mode: "netascii"}, nil},
		{"options lowered, first of a repeat kept",
			rawRRQ("f", "BlkSize", "1428", "tsize", "0", "blksize", "512", "windowsize", "8"),
			request{op: opRRQ, filename: "f", mode: "octet", options: []option{{"blksize", "1428"}, {"tsize", "0"}, {"windowsize", "8"}}}, nil},
		{"empty option value kept", rawRRQ("f", "x", ""), request{op: opRRQ, filename: "f", mode: "octet", options: []option{{"x", ""}}}, nil},
		{"write request", wrq, request{op: opWRQ, filename: "up.bin", mode: "octet", options: []option{{"blksize", "1428"}}}, nil},
		{"too short", []byte{0, 1, 0}, request{}, errMalformed},
		{"data opcode", []byte{0, 3, 0, 1, 'x'}, request{}, errMalformed},
		{"not terminated", []byte{0, 1, 'a', 0, 'o', 'c', 't', 'e', 't'}, request{}, errMalformed},
		{"no mode", []byte{0, 1, 'a', 0}, request{}, errMalformed},
		{"empty name", rawRRQ(""), request{}, errMalformed},
		{"option without value", append(rawRRQ("f"), "blksize\x00"...), request{}, errMalformed},
		{"empty option name", rawRRQ("f", "", "1"), request{}, errMalformed},
		{"too long", rawRRQ(strings.Repeat("a", maxRequestLen)), request{}, errMalformed},
		{"too many options", rawRRQ("f", manyOptions(maxOptions+1)...), request{}, errMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRequest(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("parseRequest(%q) error = %v, want %v", tc.in, err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(request{}, option{})); diff != "" {
				t.Errorf("parseRequest(%q) mismatch (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func manyOptions(n int) []string {
	var o []string
	for i := range n {
		o = append(o, "o"+string(rune('a'+i)), "1")
	}
	return o
}

// FuzzParseRequest checks that any datagram either parses into a request
// that survives a round trip or is refused, and that negotiating its options
// stays inside the limits.
func FuzzParseRequest(f *testing.F) {
	for _, s := range [][]byte{
		rawRRQ("ipxe.efi", "blksize", "1468", "tsize", "0", "windowsize", "16", "timeout", "2"),
		rawRRQ("a", "BLKSIZE", "7", "windowsize", "0", "timeout", "256"),
		rawRRQ("/x/../y", "blksize", "99999999999999999999"),
		{0, 2, 'f', 0, 'o', 'c', 't', 'e', 't', 0},
		{0, 1, 0, 0},
		{0, 4, 0, 1},
	} {
		f.Add(s)
	}
	lim := limits{blockSize: 1468, windowSize: 64, maxTimeout: 10}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := parseRequest(in)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("parseRequest(%q) error %v does not wrap errMalformed", in, err)
			}
			return
		}
		if r.op != opRRQ && r.op != opWRQ || r.filename == "" || len(r.options) > maxOptions {
			t.Fatalf("parseRequest(%q) = %+v, an impossible request", in, r)
		}
		// Re-encoding gives a request that parses to the same thing.
		var b []byte
		b = binary.BigEndian.AppendUint16(b, r.op)
		b = append(append(b, r.filename...), 0)
		b = append(append(b, r.mode...), 0)
		for _, o := range r.options {
			b = append(append(b, o.name...), 0)
			b = append(append(b, o.value...), 0)
		}
		if again, err := parseRequest(b); err != nil || !cmp.Equal(again, r, cmp.AllowUnexported(request{}, option{})) {
			t.Fatalf("parseRequest(encode(%+v)) = %+v, %v", r, again, err)
		}
		o, ack := negotiate(r.options, 1000, lim)
		if o.blockSize < minBlockSize || o.blockSize > max(lim.blockSize, defBlockSize) ||
			o.windowSize < 1 || o.windowSize > lim.windowSize || o.timeout < 0 || o.timeout > lim.maxTimeout {
			t.Fatalf("negotiate(%v) = %+v, outside %+v", r.options, o, lim)
		}
		if len(ack) > len(r.options) {
			t.Fatalf("negotiate(%v) acknowledged %v, more than asked", r.options, ack)
		}
		if p := appendOACK(nil, ack); bytes.Count(p[2:], []byte{0}) != 2*len(ack) {
			t.Fatalf("OACK %q for %v has NULs inside its fields", p, ack)
		}
	})
}

func TestNegotiate(t *testing.T) {
	lim := limits{blockSize: 1468, windowSize: 16, maxTimeout: 10}
	for _, tc := range []struct {
		name string
		in   []option
		size int64
		want opts
		ack  []option
	}{
		{"no options", nil, 100, opts{blockSize: 512, windowSize: 1, tsize: -1}, nil},
		{"all four", []option{{"blksize", "1428"}, {"tsize", "0"}, {"timeout", "2"}, {"windowsize", "8"}}, 4096,
			opts{blockSize: 1428, windowSize: 8, timeout: 2, tsize: 4096},
			[]option{{"blksize", "1428"}, {"tsize", "4096"}, {"timeout", "2"}, {"windowsize", "8"}}},
		{"capped", []option{{"windowsize", "64"}, {"blksize", "65464"}}, 1,
			opts{blockSize: 1468, windowSize: 16, tsize: -1}, []option{{"windowsize", "16"}, {"blksize", "1468"}}},
		{"out of range ignored", []option{{"blksize", "7"}, {"windowsize", "0"}, {"timeout", "0"}, {"timeout", "11"}}, 1,
			opts{blockSize: 512, windowSize: 1, tsize: -1}, nil},
		{"malformed ignored", []option{{"blksize", "x"}, {"tsize", "-1"}, {"windowsize", "+4"}, {"timeout", ""}}, 1,
			opts{blockSize: 512, windowSize: 1, tsize: -1}, nil},
		{"unknown ignored", []option{{"multicast", ""}, {"utimeout", "1000"}}, 1, opts{blockSize: 512, windowSize: 1, tsize: -1}, nil},
		{"tsize unknown size left out", []option{{"tsize", "0"}}, -1, opts{blockSize: 512, windowSize: 1, tsize: -1}, nil},
		{"timeout normalized", []option{{"timeout", "007"}}, 1, opts{blockSize: 512, windowSize: 1, timeout: 7, tsize: -1}, []option{{"timeout", "7"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ack := negotiate(tc.in, tc.size, lim)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(opts{})); diff != "" {
				t.Errorf("negotiate(%v) opts mismatch (-want +got):\n%s", tc.in, diff)
			}
			if diff := cmp.Diff(tc.ack, ack, cmp.AllowUnexported(option{})); diff != "" {
				t.Errorf("negotiate(%v) OACK mismatch (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestToNetascii(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a\nb", "a\r\nb"},
		{"a\r\nb", "a\r\x00\r\nb"},
		{"\r", "\r\x00"},
	} {
		if got := string(toNetascii([]byte(tc.in))); got != tc.want {
			t.Errorf("toNetascii(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
