package ntp

import (
	"net/netip"
	"sync"
	"time"
)

// Status is what kiln knows about its own clock, as served to clients.
type Status struct {
	// Synced is false until the clock has been set from an upstream server.
	Synced bool
	// Leap is the upstream's leap warning (LeapNone, LeapInsert, LeapDelete).
	Leap uint8
	// Stratum is kiln's own: the upstream's plus one.
	Stratum uint8
	// RefID names the upstream (its IPv4 address, or the first four bytes of
	// the MD5 of an IPv6 address, RFC 5905 7.3).
	RefID [4]byte
	// Updated is when the clock was last set or slewed from the upstream.
	Updated time.Time
	// RootDelay and RootDispersion are the round trip to the primary source
	// and the error bound at Updated (the upstream's plus this hop's).
	RootDelay, RootDispersion time.Duration
	// Upstream is the server the clock follows, for logs and metrics.
	Upstream netip.AddrPort
}

// Frequency tolerance (RFC 5905's PHI, 15 ppm) and the largest root distance
// a client accepts (MAXDIST, 1.5 s).
const (
	phi     = 15e-6
	maxDist = 1500 * time.Millisecond
)

// At returns the status as it stands at now: the dispersion grows by PHI per
// second since the last update, and once the root distance passes MAXDIST
// (about a day without an upstream) the clock counts as unsynchronized
// again, so clients stop trusting a clock that has drifted unchecked.
func (s Status) At(now time.Time) Status {
	if !s.Synced {
		return Status{}
	}
	age := now.Sub(s.Updated)
	if age < 0 {
		age = 0
	}
	s.RootDispersion += time.Duration(float64(age) * phi)
	if s.RootDelay/2+s.RootDispersion > maxDist {
		return Status{}
	}
	return s
}

// State holds the current Status, shared by the syncer (writer) and the
// server (reader).
type State struct {
	// mu guards st.
	mu sync.Mutex
	st Status
}

// Get returns the current status.
func (s *State) Get() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Set replaces the status.
func (s *State) Set(st Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st = st
}
