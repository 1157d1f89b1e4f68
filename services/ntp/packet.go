package ntp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// HeaderLen is the size of an NTP packet without extension fields or MAC.
const HeaderLen = 48

// Modes (RFC 5905 Figure 10) kiln sends or answers.
const (
	ModeClient = 3
	ModeServer = 4
)

// Leap indicators (RFC 5905 Figure 9).
const (
	LeapNone           = 0
	LeapInsert         = 1 // last minute of the day has 61 seconds
	LeapDelete         = 2 // last minute of the day has 59 seconds
	LeapUnsynchronized = 3
)

// StratumUnsynchronized is the stratum of a server whose clock is not
// synchronized (RFC 5905 Figure 11); clients refuse it.
const StratumUnsynchronized = 16

// ErrShort is returned by Parse for a datagram shorter than HeaderLen.
var ErrShort = errors.New("NTP packet shorter than 48 bytes")

// Packet is the fixed NTP header. Extension fields and MACs after it are
// not kept: kiln speaks unauthenticated NTP, as DHCP-configured LAN clients do.
type Packet struct {
	Leap, Version, Mode uint8
	Stratum             uint8
	Poll, Precision     int8
	RootDelay           Short
	RootDispersion      Short
	RefID               [4]byte
	Reference           Time
	Origin              Time
	Receive             Time
	Transmit            Time
}

// Parse decodes the header of an NTP datagram.
func Parse(b []byte) (Packet, error) {
	if len(b) < HeaderLen {
		return Packet{}, fmt.Errorf("%w (got %d)", ErrShort, len(b))
	}
	p := Packet{
		Leap:           b[0] >> 6,
		Version:        b[0] >> 3 & 7,
		Mode:           b[0] & 7,
		Stratum:        b[1],
		Poll:           int8(b[2]),
		Precision:      int8(b[3]),
		RootDelay:      Short(binary.BigEndian.Uint32(b[4:])),
		RootDispersion: Short(binary.BigEndian.Uint32(b[8:])),
		Reference:      Time(binary.BigEndian.Uint64(b[16:])),
		Origin:         Time(binary.BigEndian.Uint64(b[24:])),
		Receive:        Time(binary.BigEndian.Uint64(b[32:])),
		Transmit:       Time(binary.BigEndian.Uint64(b[40:])),
	}
	copy(p.RefID[:], b[12:16])
	return p, nil
}

// Append appends the encoded header to b.
func (p Packet) Append(b []byte) []byte {
	b = append(b, p.Leap<<6|(p.Version&7)<<3|p.Mode&7, p.Stratum, byte(p.Poll), byte(p.Precision))
	b = binary.BigEndian.AppendUint32(b, uint32(p.RootDelay))
	b = binary.BigEndian.AppendUint32(b, uint32(p.RootDispersion))
	b = append(b, p.RefID[:]...)
	for _, t := range []Time{p.Reference, p.Origin, p.Receive, p.Transmit} {
		b = binary.BigEndian.AppendUint64(b, uint64(t))
	}
	return b
}

// Time is an NTP timestamp: seconds since 1900 in the high 32 bits, the
// fraction of a second in the low 32 bits. Zero means "unknown".
type Time uint64

// ntpEpochOffset is the number of seconds from 1900 (NTP) to 1970 (Unix).
const ntpEpochOffset = 2208988800

// TimeOf converts t to an NTP timestamp; times after 2036 wrap into era 1
// as RFC 5905 intends (only differences between timestamps matter).
func TimeOf(t time.Time) Time {
	if t.IsZero() {
		return 0
	}
	sec := uint64(t.Unix() + ntpEpochOffset)
	frac := (uint64(t.Nanosecond()) << 32) / 1e9
	return Time(sec<<32 | frac)
}

// Sub returns t-u. The difference is taken modulo 2^64 and read as signed,
// so it is right across an era boundary as long as the two are within 68
// years of each other.
func (t Time) Sub(u Time) time.Duration {
	return fixedToDuration(int64(t - u))
}

// In returns the time t stands for within 68 years of near.
func (t Time) In(near time.Time) time.Time {
	if t == 0 {
		return time.Time{}
	}
	return near.Add(t.Sub(TimeOf(near)))
}

// fixedToDuration converts a signed 32.32 fixed-point number of seconds.
func fixedToDuration(d int64) time.Duration {
	sec := d >> 32
	frac := uint64(d) & 0xffffffff
	return time.Duration(sec)*time.Second + time.Duration((frac*1e9)>>32)
}

// Short is the NTP short format: 16.16 fixed-point seconds, used for root
// delay and root dispersion.
type Short uint32

// ShortOf converts a non-negative duration, saturating at 65535.99 s.
func ShortOf(d time.Duration) Short {
	switch {
	case d <= 0:
		return 0
	case d >= 65536*time.Second:
		return 0xffffffff
	}
	return Short((uint64(d) << 16) / 1e9)
}

// Duration returns s as a duration.
func (s Short) Duration() time.Duration {
	return time.Duration((uint64(s) * 1e9) >> 16)
}
