package ntp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Errors of a query; callers count them by kind.
var (
	// ErrUnsynchronized: the server says its own clock is not synchronized
	// (leap indicator 3, or stratum 16 or above).
	ErrUnsynchronized = errors.New("server is not synchronized")
	// ErrKissOfDeath: the server answered stratum 0 with a kiss code
	// (RATE, DENY, RSTR...) and must not be asked again this poll.
	ErrKissOfDeath = errors.New("server sent a kiss-o'-death")
	// ErrBogus: the reply is not a valid server answer (wrong mode, zero
	// transmit time, negative delay, root distance over 1.5 s).
	ErrBogus = errors.New("bogus NTP reply")
)

// Sample is one measurement of the local clock against a server.
type Sample struct {
	Server netip.AddrPort
	// Offset is what to add to the local clock to match the server's;
	// Delay the round trip (RFC 5905 section 8).
	Offset, Delay time.Duration
	Leap, Stratum uint8
	RefID         [4]byte
	// RootDelay and RootDispersion are the server's own, as it sent them.
	RootDelay, RootDispersion time.Duration
	// Dispersion is this measurement's error bound: both clocks' reading
	// error plus the frequency tolerance over the round trip.
	Dispersion time.Duration
}

// RootDistance is the error bound of a clock set from s (RFC 5905's
// lambda): half the round trip to the primary source plus the dispersions.
func (s Sample) RootDistance() time.Duration {
	return (s.RootDelay+s.Delay)/2 + s.RootDispersion + s.Dispersion
}

// query sends one client-mode request over conn (connected to the server)
// and reads until the matching reply or ctx's deadline. The request's
// transmit timestamp is a random nonce, not the local time (as chrony does):
// it is what a genuine reply echoes as its origin, so an off-path attacker
// cannot forge one and the local clock is not disclosed.
func query(ctx context.Context, conn net.Conn, now func() time.Time) (Sample, error) {
	var nb [8]byte
	rand.Read(nb[:])
	nonce := Time(binary.BigEndian.Uint64(nb[:]))
	req := Packet{Version: 4, Mode: ModeClient, Poll: 6, Precision: precision, Transmit: nonce}
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	t1 := now()
	if _, err := conn.Write(req.Append(nil)); err != nil {
		return Sample{}, fmt.Errorf("sending NTP request: %w", err)
	}
	buf := make([]byte, 1500)
	for {
		n, err := conn.Read(buf)
		t4 := now()
		if err != nil {
			return Sample{}, fmt.Errorf("waiting for the NTP reply: %w", err)
		}
		resp, err := Parse(buf[:n])
		if err != nil || resp.Origin != nonce {
			continue // a stale, duplicate or forged datagram: keep waiting
		}
		return measure(resp, t1, t4)
	}
}

// measure checks a reply matched to a request sent at t1 and received at
// t4 (local clock) and computes the sample (RFC 5905 sections 8 and 13).
func measure(resp Packet, t1, t4 time.Time) (Sample, error) {
	if resp.Mode != ModeServer {
		return Sample{}, fmt.Errorf("%w: mode %d, want %d", ErrBogus, resp.Mode, ModeServer)
	}
	if resp.Stratum == 0 {
		return Sample{}, fmt.Errorf("%w: %q", ErrKissOfDeath, resp.RefID[:])
	}
	if resp.Leap == LeapUnsynchronized || resp.Stratum >= StratumUnsynchronized {
		return Sample{}, fmt.Errorf("%w: leap indicator %d, stratum %d", ErrUnsynchronized, resp.Leap, resp.Stratum)
	}
	if resp.Transmit == 0 || resp.Receive == 0 {
		return Sample{}, fmt.Errorf("%w: zero receive or transmit timestamp", ErrBogus)
	}
	T1, T4 := TimeOf(t1), TimeOf(t4)
	// Differences of NTP timestamps, so a server in another era still works.
	offset := (resp.Receive.Sub(T1) + resp.Transmit.Sub(T4)) / 2
	delay := T4.Sub(T1) - resp.Transmit.Sub(resp.Receive)
	if delay < 0 {
		return Sample{}, fmt.Errorf("%w: negative round trip %s", ErrBogus, delay)
	}
	s := Sample{
		Offset: offset, Delay: delay,
		Leap: resp.Leap, Stratum: resp.Stratum, RefID: resp.RefID,
		RootDelay: resp.RootDelay.Duration(), RootDispersion: resp.RootDispersion.Duration(),
		Dispersion: precisionDuration(resp.Precision) + precisionDuration(precision) + time.Duration(float64(delay)*phi),
	}
	if d := s.RootDistance(); d > maxDist {
		return Sample{}, fmt.Errorf("%w: root distance %s over %s", ErrBogus, d, maxDist)
	}
	return s, nil
}

// precisionDuration is 2^p seconds.
func precisionDuration(p int8) time.Duration {
	if p >= 0 {
		return time.Second << min(p, 30)
	}
	return time.Second >> min(-p, 62)
}

// Query asks server (host or host:port, port 123 when omitted) once and
// returns the sample; ErrUnsynchronized when the server answered that its
// clock is not synchronized. ctx bounds the wait.
func Query(ctx context.Context, server string) (Sample, error) {
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "123")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", server)
	if err != nil {
		return Sample{}, fmt.Errorf("NTP server %s: %w", server, err)
	}
	defer conn.Close()
	s, err := query(ctx, conn, time.Now)
	if err != nil {
		return Sample{}, fmt.Errorf("NTP server %s: %w", server, err)
	}
	s.Server, _ = netip.ParseAddrPort(conn.RemoteAddr().String())
	return s, nil
}
