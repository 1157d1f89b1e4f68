package dhcp

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/sys/unix"

	"kiln.dev/kiln/services/internal/keyrate"
)

// listener is one UDP socket kiln answers on.
type listener struct {
	conn     *net.UDPConn
	ifname   string     // bound interface, "" for the relay listener
	ifaddr   netip.Addr // an IPv4 address of ifname
	port4011 bool
}

// listen opens a UDP socket on port, bound to ifname unless it is empty, with
// IP_PKTINFO so each packet's destination address is known.
func listen(ifname string, ifaddr netip.Addr, port int) (*listener, error) {
	conn, err := server4.NewIPv4UDPConn(ifname, &net.UDPAddr{Port: port})
	if err != nil {
		where := "all interfaces"
		if ifname != "" {
			where = ifname
		}
		return nil, fmt.Errorf("listening on %s port %d: %w", where, port, err)
	}
	rc, err := conn.SyscallConn()
	if err == nil {
		var serr error
		err = rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1) })
		if err == nil {
			err = serr
		}
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("enabling IP_PKTINFO: %w", err)
	}
	return &listener{conn: conn, ifname: ifname, ifaddr: ifaddr, port4011: port == pxePort}, nil
}

// pxePort is where PXE clients ask a proxyDHCP (boot) server directly.
const pxePort = 4011

// read returns the next packet and how it arrived.
func (l *listener) read(buf, oob []byte) (int, ingress, error) {
	n, oobn, _, src, err := l.conn.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		return 0, ingress{}, err
	}
	in := ingress{ifname: l.ifname, ifaddr: l.ifaddr, peer: src, port4011: l.port4011}
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			// struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
			if m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= 12 {
				in.dst = netip.AddrFrom4([4]byte(m.Data[8:12]))
			}
		}
	}
	return n, in, nil
}

// job is one received packet waiting for a worker.
type job struct {
	l   *listener
	pkt []byte
	in  ingress
}

// pool is a fixed set of workers. Packets of one MAC always go to the same
// worker, so a client's messages are handled in order and never concurrently.
type pool struct {
	log    *slog.Logger
	srv    *server
	limit  *limiter
	queues []chan job

	// dropMu guards lastDrop.
	dropMu   sync.Mutex
	lastDrop time.Time
}

const (
	workers    = 4
	queueDepth = 64
)

func newPool(log *slog.Logger, srv *server, limit *limiter) *pool {
	p := &pool{log: log, srv: srv, limit: limit}
	for range workers {
		p.queues = append(p.queues, make(chan job, queueDepth))
	}
	return p
}

// run starts the workers and returns when ctx is done and they finished.
func (p *pool) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, q := range p.queues {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-q:
					p.work(ctx, j)
				}
			}
		}()
	}
	wg.Wait()
}

// submit queues a packet, or drops it if its MAC is over its rate or the
// worker is busy (clients retransmit).
func (p *pool) submit(j job) {
	if len(j.pkt) < 240 {
		return
	}
	if j.l.ifname == "" && [4]byte(j.pkt[24:28]) == [4]byte{} {
		return // the relay listener also sees local broadcasts; their interface's listener has them
	}
	var mac [6]byte
	copy(mac[:], j.pkt[28:34]) // chaddr
	if !p.limit.Allow(mac) {
		p.dropped("rate limit", mac)
		return
	}
	h := fnv.New32a()
	h.Write(mac[:])
	select {
	case p.queues[h.Sum32()%uint32(len(p.queues))] <- j:
	default:
		p.dropped("workers busy", mac)
	}
}

func (p *pool) dropped(why string, mac [6]byte) {
	p.srv.metrics.drop(why)
	p.dropMu.Lock()
	defer p.dropMu.Unlock()
	if now := time.Now(); now.Sub(p.lastDrop) > 10*time.Second {
		p.lastDrop = now
		p.log.Warn("dropping DHCP packets", "reason", why, "mac", net.HardwareAddr(mac[:]))
	}
}

func (p *pool) work(ctx context.Context, j job) {
	req, err := dhcpv4.FromBytes(j.pkt)
	if err != nil {
		p.log.Debug("ignoring malformed packet", "from", j.in.peer, "err", err)
		p.srv.metrics.drop("malformed")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, dst, err := p.srv.handle(ctx, req, j.in)
	if err != nil {
		p.log.Warn("no reply", "mac", req.ClientHWAddr, "type", req.MessageType(), "err", err)
		p.srv.metrics.error()
		return
	}
	if resp == nil {
		return
	}
	if _, err := j.l.conn.WriteToUDPAddrPort(resp.ToBytes(), dst); err != nil {
		p.log.Warn("sending reply failed", "mac", req.ClientHWAddr, "to", dst, "err", err)
		return
	}
	p.log.Debug("replied", "mac", req.ClientHWAddr, "type", resp.MessageType(), "yiaddr", resp.YourIPAddr, "to", dst)
}

// serve reads l until it is closed, handing packets to p.
func (p *pool) serve(l *listener) error {
	oob := make([]byte, 128)
	for {
		buf := make([]byte, 1500)
		n, in, err := l.read(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading DHCP socket: %w", err)
		}
		p.submit(job{l: l, pkt: buf[:n], in: in})
	}
}

// limiter is a token bucket per MAC, for at most max MACs (keyrate: a
// flood of made-up MACs evicts the least recently seen bucket).
type limiter = keyrate.Limiter[[6]byte]

// limiterMACs bounds the limiter: ~100 bytes a bucket, ~1.6 MB at the cap.
const limiterMACs = 16384

func newLimiter(rate, burst float64, max int, now func() time.Time) *limiter {
	return keyrate.New[[6]byte](rate, burst, max, now)
}
