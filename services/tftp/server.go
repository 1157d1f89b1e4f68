package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/pin/tftp/v3"
)

// Event is one TFTP request and its outcome.
type Event struct {
	Time   time.Time
	Client netip.Addr
	// File is the name as requested; Path the cleaned path served ("" if refused).
	File, Path string
	Bytes      int64
	Duration   time.Duration
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
	// Timeout is how long to wait for an ACK before retransmitting; Retries
	// how many times to send a packet before giving up.
	Timeout time.Duration
	Retries int
	// MaxTransfers caps concurrent transfers; MaxPerClient caps them per client address.
	MaxTransfers, MaxPerClient int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// DefaultOptions returns the defaults used for unset fields.
func DefaultOptions() Options {
	return Options{
		Listen:       ":69",
		Root:         "/usr/share/kiln/ipxe",
		Timeout:      3 * time.Second,
		Retries:      5,
		MaxTransfers: 64,
		MaxPerClient: 4,
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
	if o.Timeout <= 0 {
		o.Timeout = d.Timeout
	}
	if o.Retries <= 0 {
		o.Retries = d.Retries
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
	tftp   *tftp.Server
	// ctx bounds event reporting; set by Serve.
	ctx context.Context
}

// New opens the root directory and returns a server. events may be nil.
func New(o Options, events EventSink, log *slog.Logger) (*Server, error) {
	o = o.withDefaults()
	root, err := os.OpenRoot(o.Root)
	if err != nil {
		return nil, fmt.Errorf("opening TFTP root %s: %w (install the iPXE binaries there or set the TFTP root)", o.Root, err)
	}
	s := &Server{opts: o, root: root, events: events, log: log, limit: newLimiter(o.MaxTransfers, o.MaxPerClient), ctx: context.Background()}
	s.tftp = tftp.NewServer(s.read, nil)
	s.tftp.SetTimeout(o.Timeout)
	s.tftp.SetRetries(o.Retries)
	s.tftp.SetHook(hook{s.log})
	return s, nil
}

// Serve answers requests on conn until ctx is cancelled; ready is called once
// serving. It closes conn and the root.
func (s *Server) Serve(ctx context.Context, conn *net.UDPConn, ready func()) error {
	s.ctx = ctx
	defer s.root.Close()
	listen := netip.Addr{}
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		listen, _ = netip.AddrFromSlice(ua.IP)
	}
	s.setBlockSize(listen)
	done := make(chan error, 1)
	go func() { done <- s.tftp.Serve(conn) }()
	if ready != nil {
		ready()
	}
	s.log.Info("TFTP serving", "addr", conn.LocalAddr().String(), "root", s.opts.Root)
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("serving TFTP: %w", err)
			}
			return errors.New("TFTP server stopped")
		case <-t.C:
			// Interfaces come and go (netconf); follow their MTU.
			s.setBlockSize(listen)
		case <-ctx.Done():
			stopped := make(chan struct{})
			go func() { s.tftp.Shutdown(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(s.opts.Timeout * time.Duration(s.opts.Retries+1)):
				s.log.Warn("TFTP transfers still running at shutdown; leaving them")
			}
			return nil
		}
	}
}

func (s *Server) setBlockSize(listen netip.Addr) {
	ifs, err := systemIfaces()
	if err != nil {
		s.log.Debug("listing interfaces for the blksize cap", "err", err)
	}
	s.tftp.SetBlockSize(BlockSizeCap(listen, ifs, s.opts.MaxBlockSize))
}

// read is the pin/tftp read handler.
func (s *Server) read(filename string, rf io.ReaderFrom) error {
	start := s.opts.Now()
	ev := Event{Time: start, File: filename}
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ra := ot.RemoteAddr()
		ev.Client, _ = netip.AddrFromSlice(ra.IP)
		ev.Client = ev.Client.Unmap()
	}
	err := s.serve(filename, rf, &ev)
	ev.Duration = s.opts.Now().Sub(start)
	if err != nil {
		ev.Err = err.Error()
		s.log.Info("TFTP request failed", "client", ev.Client, "file", filename, "err", err)
	} else {
		s.log.Debug("TFTP sent", "client", ev.Client, "file", ev.Path, "bytes", ev.Bytes, "took", ev.Duration)
	}
	s.report(ev)
	return err
}

func (s *Server) serve(filename string, rf io.ReaderFrom, ev *Event) error {
	name, err := CleanPath(filename)
	if err != nil {
		return err
	}
	if !s.limit.acquire(ev.Client) {
		return ErrBusy
	}
	defer s.limit.release(ev.Client)
	f, size, err := s.open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	ev.Path = name
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ot.SetSize(size)
	}
	n, err := rf.ReadFrom(f)
	ev.Bytes = n
	if err != nil {
		return fmt.Errorf("sending %s: %w", name, err)
	}
	return nil
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

func (s *Server) report(ev Event) {
	if s.events == nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	if err := s.events.TFTPEvent(ctx, ev); err != nil {
		s.log.Debug("storing TFTP boot event", "client", ev.Client, "err", err)
	}
}

// hook logs the library's transfer results at debug level.
type hook struct{ log *slog.Logger }

func (h hook) OnSuccess(st tftp.TransferStats) {
	h.log.Debug("TFTP transfer done", "client", st.RemoteAddr, "file", st.Filename, "opts", fmt.Sprint(st.Opts),
		"datagrams", st.DatagramsSent, "took", st.Duration)
}

func (h hook) OnFailure(st tftp.TransferStats, err error) {
	h.log.Debug("TFTP transfer failed", "client", st.RemoteAddr, "file", st.Filename, "err", err)
}

// ListenUDP binds the TFTP socket.
func ListenUDP(addr string) (*net.UDPConn, error) {
	// PXE is IPv4: a wildcard address binds IPv4 only, so the library sees
	// IPv4 packet info (local address and interface MTU).
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
