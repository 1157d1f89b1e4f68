package ntp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"golang.org/x/net/ipv4"

	"kiln.dev/kiln/services/metrics"
)

// Options configures the NTP server.
type Options struct {
	// Listen is the UDP address, e.g. ":123".
	Listen string
	// State is the clock status served; a nil State serves the clock as
	// unsynchronized.
	State *State
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Metrics receives the server's families; nil counts nothing.
	Metrics *metrics.Registry
}

// precision is the log2 of the error with which kiln reads its clock for a
// reply, about a microsecond (the kernel clock itself is finer; the receive
// path through Go is not).
const precision = -20

// unsyncedRefID is sent while kiln's clock is unsynchronized.
var unsyncedRefID = [4]byte{'I', 'N', 'I', 'T'}

// Server answers NTP client requests from kiln's clock.
type Server struct {
	opts  Options
	log   *slog.Logger
	stats *serverMetrics // nil counts nothing
}

// New returns a server.
func New(o Options, log *slog.Logger) *Server {
	if o.Listen == "" {
		o.Listen = ":123"
	}
	if o.State == nil {
		o.State = &State{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Server{opts: o, log: log, stats: newServerMetrics(o.Metrics, o.State, o.Now)}
}

// ListenUDP binds the NTP socket (IPv4: the provisioning subnets are IPv4).
func ListenUDP(addr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("NTP listen address %q: %w", addr, err)
	}
	c, err := net.ListenUDP("udp4", ua)
	if err != nil {
		return nil, fmt.Errorf("binding NTP socket %s: %w", addr, err)
	}
	return c, nil
}

// Serve answers requests on conn until ctx is cancelled; ready is called
// once serving. Replies leave from the address each request was sent to
// (IP_PKTINFO), so a multi-homed appliance answers from the address the
// client asked. It closes conn.
func (s *Server) Serve(ctx context.Context, conn *net.UDPConn, ready func()) error {
	pc := ipv4.NewPacketConn(conn)
	if err := pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
		s.log.Warn("no IP_PKTINFO: replies come from the listen address", "err", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if ready != nil {
		ready()
	}
	s.log.Info("NTP serving", "addr", conn.LocalAddr().String())
	buf := make([]byte, 1500)
	out := make([]byte, 0, HeaderLen)
	for {
		n, cm, from, err := pc.ReadFrom(buf)
		rx := s.opts.Now()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("serving NTP: %w", err)
		}
		req, err := Parse(buf[:n])
		if err != nil {
			s.stats.count("malformed")
			continue
		}
		st := s.opts.State.Get().At(rx)
		resp, ok := reply(req, st, TimeOf(rx))
		if !ok {
			s.stats.count("ignored")
			continue
		}
		resp.Transmit = TimeOf(s.opts.Now())
		var wcm *ipv4.ControlMessage
		if cm != nil && cm.Dst != nil && !cm.Dst.IsMulticast() && !cm.Dst.Equal(net.IPv4bcast) {
			wcm = &ipv4.ControlMessage{Src: cm.Dst}
		}
		// Counted before sending, so a client holding the reply sees the count.
		if st.Synced {
			s.stats.count("served")
		} else {
			s.stats.count("served_unsynced")
		}
		if _, err := pc.WriteTo(resp.Append(out[:0]), wcm, from); err != nil {
			s.log.Debug("NTP reply not sent", "client", from, "err", err)
			s.stats.sendFailed()
		}
	}
}

// reply is the server-mode answer (RFC 5905 section 9.2, "fast path") to a
// client request received at rx from a clock in status st, without its
// transmit timestamp. It returns false for anything but a client-mode
// request of versions 1-4: symmetric, broadcast and control packets
// (mode 6/7, the ones abused for amplification) get no answer.
func reply(req Packet, st Status, rx Time) (Packet, bool) {
	if req.Mode != ModeClient || req.Version < 1 || req.Version > 4 {
		return Packet{}, false
	}
	resp := Packet{
		Version:   req.Version,
		Mode:      ModeServer,
		Poll:      min(max(req.Poll, 4), 17),
		Precision: precision,
		Origin:    req.Transmit,
		Receive:   rx,
	}
	if !st.Synced {
		resp.Leap = LeapUnsynchronized
		resp.Stratum = StratumUnsynchronized
		resp.RefID = unsyncedRefID
		return resp, true
	}
	resp.Leap = st.Leap
	resp.Stratum = st.Stratum
	resp.RefID = st.RefID
	resp.Reference = TimeOf(st.Updated)
	resp.RootDelay = ShortOf(st.RootDelay)
	resp.RootDispersion = ShortOf(st.RootDispersion)
	return resp, true
}
