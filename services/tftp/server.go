package tftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/services/metrics"
)

// Event is one TFTP request and its outcome.
type Event struct {
	Time   time.Time
	Client netip.Addr
	// File is the name as requested; Path the cleaned path served ("" if refused).
	File, Path string
	// BlockSize and WindowSize are the negotiated values (0 if refused).
	BlockSize, WindowSize int
	Bytes                 int64
	Duration              time.Duration
	// Err is empty on success, else why the request failed.
	Err string
}

// EventSink stores boot events.
type EventSink interface {
	TFTPEvent(ctx context.Context, ev Event) error
}

// Options configures the TFTP server.
type Options struct {
	// Listen is the UDP address, e.g. ":69".
	Listen string
	// Root is the directory served.
	Root string
	// MaxBlockSize caps the negotiated blksize below the MTU-derived cap; 0: no extra cap.
	MaxBlockSize int
	// MaxWindowSize caps the negotiated windowsize (RFC 7440); 0: DefaultMaxWindowSize.
	MaxWindowSize int
	// Timeout is how long to wait for an ACK before retransmitting (unless the
	// client negotiates the timeout option); Retries how many times a packet
	// is sent again before the transfer is given up.
	Timeout time.Duration
	Retries int
	// MaxTimeout is the largest timeout option (seconds) a client may set; 0: 10.
	MaxTimeout int
	// MaxTransfers caps concurrent transfers; MaxPerClient caps them per client address.
	MaxTransfers, MaxPerClient int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Metrics receives the server's families; nil counts nothing.
	Metrics *metrics.Registry
}

// DefaultMaxWindowSize is the largest windowsize granted unless configured:
// 64 blocks of 1468 bytes are ~92 KiB in flight, well inside default socket
// buffers, and past the point where a larger window still pays off.
const DefaultMaxWindowSize = 64

// DefaultOptions returns the defaults used for unset fields.
func DefaultOptions() Options {
	return Options{
		Listen:        ":69",
		Root:          "/usr/share/kiln/ipxe",
		MaxWindowSize: DefaultMaxWindowSize,
		Timeout:       3 * time.Second,
		Retries:       5,
		MaxTimeout:    10,
		MaxTransfers:  64,
		MaxPerClient:  4,
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Listen == "" {
		o.Listen = d.Listen
	}
	if o.Root == "" {
		o.Root = d.Root
	}
	if o.MaxWindowSize <= 0 {
		o.MaxWindowSize = d.MaxWindowSize
	}
	if o.Timeout <= 0 {
		o.Timeout = d.Timeout
	}
	if o.Retries <= 0 {
		o.Retries = d.Retries
	}
	if o.MaxTimeout <= 0 {
		o.MaxTimeout = d.MaxTimeout
	}
	if o.MaxTransfers <= 0 {
		o.MaxTransfers = d.MaxTransfers
	}
	if o.MaxPerClient <= 0 {
		o.MaxPerClient = d.MaxPerClient
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Server serves files from a root directory over TFTP, read only.
type Server struct {
	opts   Options
	root   *os.Root
	events EventSink
	log    *slog.Logger
	limit  *limiter
	stats  *tftpMetrics // nil counts nothing
	// handlers bounds the goroutines handling requests (transfers and refusals).
	handlers chan struct{}
	wg       sync.WaitGroup

	// mu guards active.
	mu sync.Mutex
	// active holds the requests (client address and port, and the request's
	// bytes) whose transfer is running: a retransmitted request does not start
	// a second one, while a different request from the same port (a PXE ROM
	// asking again with other options after aborting a tsize query) does.
	active map[activeKey]bool
}

// activeKey identifies a running transfer by its request.
type activeKey struct {
	client  netip.AddrPort
	request string
}

// New opens the root directory and returns a server. events may be nil.
func New(o Options, events EventSink, log *slog.Logger) (*Server, error) {
	o = o.withDefaults()
	root, err := os.OpenRoot(o.Root)
	if err != nil {
		return nil, fmt.Errorf("opening TFTP root %s: %w (install the iPXE binaries there or set provisioning.tftp.root)", o.Root, err)
	}
	return &Server{
		opts: o, root: root, events: events, log: log,
		limit:    newLimiter(o.MaxTransfers, o.MaxPerClient),
		stats:    newMetrics(o.Metrics),
		handlers: make(chan struct{}, o.MaxTransfers+32),
		active:   map[activeKey]bool{},
	}, nil
}

// Serve answers requests on conn until ctx is cancelled; ready is called once
// serving. It closes conn and the root, and returns once running transfers
// have stopped.
func (s *Server) Serve(ctx context.Context, conn *net.UDPConn, ready func()) error {
	defer s.root.Close()
	listen := netip.Addr{}
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		listen, _ = netip.AddrFromSlice(ua.IP)
		listen = listen.Unmap()
	}
	if err := enablePktinfo(conn); err != nil {
		s.log.Warn("no IP_PKTINFO: replies come from the listen address and blksize follows the smallest MTU", "err", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if ready != nil {
		ready()
	}
	s.log.Info("TFTP serving", "addr", conn.LocalAddr().String(), "root", s.opts.Root,
		"max_windowsize", s.opts.MaxWindowSize, "max_transfers", s.opts.MaxTransfers)

	buf := make([]byte, maxRequestLen+1)
	oob := make([]byte, 128)
	var err error
	for {
		n, oobn, _, from, rerr := conn.ReadMsgUDPAddrPort(buf, oob)
		if rerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("serving TFTP: %w", rerr)
			}
			break
		}
		local, ifindex := parsePktinfo(oob[:oobn])
		if !local.IsValid() {
			local = listen
		}
		pkt := append([]byte(nil), buf[:n]...)
		select {
		case s.handlers <- struct{}{}:
		default:
			s.log.Debug("TFTP request dropped: too many requests in progress", "client", from)
			s.stats.drop()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer func() { <-s.handlers; s.wg.Done() }()
			s.handle(ctx, pkt, from, local, ifindex)
		}()
	}
	conn.Close()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.opts.Timeout + 5*time.Second):
		s.log.Warn("TFTP transfers still running after shutdown; leaving them")
	}
	return err
}

// handle answers one request: refusal or a whole transfer.
func (s *Server) handle(ctx context.Context, pkt []byte, from netip.AddrPort, local netip.Addr, ifindex int) {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	start := s.opts.Now()
	ev := Event{Time: start, Client: from.Addr()}
	req, err := parseRequest(pkt)
	if err != nil {
		// Not worth an event (it names no file) nor a transfer socket.
		s.log.Debug("TFTP packet ignored", "client", from, "err", err)
		return
	}
	ev.File = req.filename

	key := activeKey{from, string(pkt)}
	s.mu.Lock()
	dup := s.active[key]
	s.active[key] = true
	s.mu.Unlock()
	if dup {
		s.log.Debug("TFTP request retransmitted; the transfer is already running", "client", from, "file", req.filename)
		return
	}
	defer func() {
		s.mu.Lock()
		delete(s.active, key)
		s.mu.Unlock()
	}()

	conn, err := transferConn(local)
	if err != nil {
		s.log.Warn("TFTP: opening a transfer socket", "client", from, "err", err)
		return
	}
	defer conn.Close()
	s.stats.start()
	err = s.serve(ctx, conn, req, from, ifindex, &ev)
	s.stats.done(err, ev.Bytes)
	ev.Duration = s.opts.Now().Sub(start)
	if err != nil {
		ev.Err = err.Error()
		s.log.Info("TFTP request failed", "client", ev.Client, "file", req.filename, "err", err)
	} else {
		s.log.Debug("TFTP sent", "client", ev.Client, "file", ev.Path, "bytes", ev.Bytes, "blksize", ev.BlockSize,
			"windowsize", ev.WindowSize, "took", ev.Duration)
	}
	s.report(ctx, ev)
}

// serve applies the policy to req and runs the transfer on conn.
func (s *Server) serve(ctx context.Context, conn *net.UDPConn, req request, from netip.AddrPort, ifindex int, ev *Event) error {
	refuse := func(code uint16, err error) error {
		conn.WriteToUDPAddrPort(appendError(nil, code, err.Error()), from)
		return err
	}
	if req.op == opWRQ {
		return refuse(errCodeAccess, ErrReadOnly)
	}
	if req.mode != modeOctet && req.mode != modeNetascii {
		return refuse(errCodeIllegalOp, fmt.Errorf("%w %q: use octet or netascii", ErrMode, req.mode))
	}
	name, err := CleanPath(req.filename)
	if err != nil {
		return refuse(errCodeAccess, err)
	}
	if !s.limit.acquire(ev.Client) {
		return refuse(errCodeUndefined, ErrBusy)
	}
	defer s.limit.release(ev.Client)
	f, size, err := s.open(name)
	if err != nil {
		code := uint16(errCodeAccess)
		if errors.Is(err, ErrNotFound) {
			code = errCodeNotFound
		}
		return refuse(code, err)
	}
	src, err := newSource(f, size, req.mode)
	if err != nil {
		return refuse(errCodeUndefined, err)
	}
	defer src.close()
	ev.Path = name
	o, oack := negotiate(req.options, src.size, limits{
		blockSize:  s.blockSizeCap(ifindex),
		windowSize: s.opts.MaxWindowSize,
		maxTimeout: s.opts.MaxTimeout,
	})
	ev.BlockSize, ev.WindowSize = o.blockSize, o.windowSize
	t := &transfer{conn: conn, peer: from, src: src, size: src.size, o: o, oack: oack,
		timeout: s.opts.Timeout, retries: s.opts.Retries}
	if o.timeout > 0 {
		t.timeout = time.Duration(o.timeout) * time.Second
	}
	err = t.run(ctx)
	ev.Bytes = t.acked()
	if err != nil {
		return fmt.Errorf("sending %s: %w", name, err)
	}
	return nil
}

// Refusal reasons sent to clients in ERROR packets (see also policy.go).
var (
	ErrReadOnly = errors.New("read-only server")
	ErrMode     = errors.New("unsupported transfer mode")
)

// blockSizeCap is the largest blksize for a request that arrived on the
// interface with index ifindex: its MTU - 32 (IPv4 20, UDP 8, TFTP 4 bytes),
// else the cap BlockSizeCap computes for the listen address; always within
// Options.MaxBlockSize.
func (s *Server) blockSizeCap(ifindex int) int {
	if ifindex > 0 {
		if ifc, err := net.InterfaceByIndex(ifindex); err == nil && ifc.MTU > 0 {
			return BlockSizeCap(netip.Addr{}, []Iface{{MTU: ifc.MTU, Up: true}}, s.opts.MaxBlockSize)
		}
	}
	ifs, err := systemIfaces()
	if err != nil {
		s.log.Debug("listing interfaces for the blksize cap", "err", err)
	}
	listen := netip.Addr{}
	if ap, err := netip.ParseAddrPort(s.opts.Listen); err == nil {
		listen = ap.Addr()
	}
	return BlockSizeCap(listen, ifs, s.opts.MaxBlockSize)
}

// open opens a regular file inside the root without blocking on FIFOs.
func (s *Server) open(name string) (*os.File, int64, error) {
	f, err := s.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, ErrNotFound
		}
		// Escapes through symlinks, permission problems, …
		s.log.Debug("opening TFTP file", "name", name, "err", err)
		return nil, 0, ErrAccess
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, ErrNotFound
	}
	return f, st.Size(), nil
}

func (s *Server) report(ctx context.Context, ev Event) {
	if s.events == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.events.TFTPEvent(ctx, ev); err != nil {
		s.log.Debug("storing TFTP boot event", "client", ev.Client, "err", err)
	}
}

// ListenUDP binds the TFTP socket.
func ListenUDP(addr string) (*net.UDPConn, error) {
	// PXE is IPv4: a wildcard address binds IPv4 only, so requests carry
	// IPv4 packet info (local address and interface).
	network := "udp4"
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is6() && !ap.Addr().Is4In6() {
		network = "udp6"
	}
	ua, err := net.ResolveUDPAddr(network, addr)
	if err != nil {
		return nil, fmt.Errorf("parsing TFTP listen address %q: %w", addr, err)
	}
	c, err := net.ListenUDP(network, ua)
	if err != nil {
		return nil, fmt.Errorf("binding TFTP %s: %w", addr, err)
	}
	return c, nil
}

// transferConn opens a transfer's socket on an ephemeral port of local (the
// address the client sent its request to), so replies come from the address
// the client talks to.
func transferConn(local netip.Addr) (*net.UDPConn, error) {
	network := "udp4"
	if local.Is6() {
		network = "udp6"
	}
	if local.IsValid() && !local.IsUnspecified() && !local.IsMulticast() {
		if c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0))); err == nil {
			return c, nil
		}
	}
	return net.ListenUDP(network, nil)
}

// enablePktinfo asks the kernel for each IPv4 request's local address and
// interface.
func enablePktinfo(conn *net.UDPConn) error {
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok && ua.IP.To4() == nil && !ua.IP.IsUnspecified() {
		return errors.New("IPv6 listener")
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
	}); err != nil {
		return err
	}
	return serr
}

// parsePktinfo returns the local address (ipi_spec_dst) and interface index
// of an IP_PKTINFO control message, or zero values.
func parsePktinfo(oob []byte) (netip.Addr, int) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.Addr{}, 0
	}
	for _, m := range msgs {
		// struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst, ipi_addr; }
		if m.Header.Level != unix.IPPROTO_IP || m.Header.Type != unix.IP_PKTINFO || len(m.Data) < 12 {
			continue
		}
		ifindex := int(int32(binary.NativeEndian.Uint32(m.Data[0:4])))
		local := netip.AddrFrom4([4]byte(m.Data[4:8]))
		return local, ifindex
	}
	return netip.Addr{}, 0
}
