package tftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"
)

// Transfer failures reported in events (the client gets an ERROR packet or,
// on a timeout, nothing more).
var (
	ErrTimeout      = errors.New("client stopped acknowledging")
	ErrClientAbort  = errors.New("client aborted")
	ErrFileChanged  = errors.New("file shrank during the transfer")
	ErrShuttingDown = errors.New("server shutting down")
)

// transfer sends one file to one client from its own socket (the server's
// transfer ID), RFC 1350 with the RFC 7440 window: up to windowSize DATA
// blocks are sent, then the sender waits for the ACK of the last one.
//
// Loss handling:
//   - no ACK within the timeout: the window is sent again from the first
//     unacknowledged block, at most retries times in a row, then the transfer
//     fails with ErrTimeout;
//   - an ACK of a block inside the window (the client saw a gap, RFC 7440 §4):
//     the next window starts right after it;
//   - with a window above 1, an ACK of the block before the window (the
//     client received none of it and re-acknowledged on its own timeout): the
//     window is sent again at once, once per window; more such duplicates wait
//     for the timeout. With a window of 1 duplicates are ignored, which avoids
//     the Sorcerer's Apprentice Syndrome (RFC 1123 §4.2.3.1);
//   - ACKs of older blocks and packets from other ports (answered with
//     ERROR 5, unknown transfer ID) are ignored.
type transfer struct {
	conn    *net.UDPConn
	peer    netip.AddrPort
	src     io.ReaderAt
	size    int64
	o       opts
	oack    []option // nil: no OACK, DATA 1 comes first
	timeout time.Duration
	retries int

	// base is the first unacknowledged block; 0 while the OACK is unacknowledged.
	base int64
	// sent is the highest block sent in the current window.
	sent int64
	// dupResent records that the current window was resent for a duplicate ACK.
	dupResent bool
	pkt       []byte
	in        []byte
}

// lastBlock is the number of the final (short, possibly empty) block.
func (t *transfer) lastBlock() int64 { return t.size/int64(t.o.blockSize) + 1 }

// acked returns the bytes the client has acknowledged.
func (t *transfer) acked() int64 {
	if t.base <= 1 {
		return 0
	}
	return min((t.base-1)*int64(t.o.blockSize), t.size)
}

// run performs the transfer until the last block is acknowledged, ctx is
// done, the client gives up or retries are exhausted.
func (t *transfer) run(ctx context.Context) error {
	t.pkt = make([]byte, 4+t.o.blockSize)
	t.in = make([]byte, 4+maxBlockSize)
	if t.oack == nil {
		t.base = 1
	}
	stop := context.AfterFunc(ctx, func() { t.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	tries := 0
	for t.base <= t.lastBlock() {
		if ctx.Err() != nil {
			t.sendError(errCodeUndefined, ErrShuttingDown.Error())
			return ErrShuttingDown
		}
		if tries > t.retries {
			return fmt.Errorf("%w: no answer after %d sends of block %d", ErrTimeout, tries, t.base)
		}
		tries++
		if err := t.sendWindow(); err != nil {
			return err
		}
		progressed, err := t.await(ctx)
		if err != nil {
			return err
		}
		if progressed {
			tries = 0
		}
	}
	return nil
}

// sendWindow sends the OACK (base 0) or the window starting at base.
func (t *transfer) sendWindow() error {
	if t.base == 0 {
		t.sent = 0
		_, err := t.conn.WriteToUDPAddrPort(appendOACK(t.pkt[:0], t.oack), t.peer)
		if err != nil {
			return fmt.Errorf("sending OACK: %w", err)
		}
		return nil
	}
	last := min(t.base+int64(t.o.windowSize)-1, t.lastBlock())
	for b := t.base; b <= last; b++ {
		p, err := t.block(b)
		if err != nil {
			t.sendError(errCodeUndefined, "file changed on the server")
			return err
		}
		if _, err := t.conn.WriteToUDPAddrPort(p, t.peer); err != nil {
			return fmt.Errorf("sending block %d: %w", b, err)
		}
		t.sent = b
	}
	return nil
}

// block builds the DATA packet of block b (numbers wrap to 0 after 65535).
func (t *transfer) block(b int64) ([]byte, error) {
	bs := int64(t.o.blockSize)
	off := (b - 1) * bs
	want := max(min(bs, t.size-off), 0)
	p := t.pkt[:4+want]
	binary.BigEndian.PutUint16(p, opDATA)
	binary.BigEndian.PutUint16(p[2:], uint16(b))
	if want > 0 {
		n, err := t.src.ReadAt(p[4:], off)
		if int64(n) < want {
			return nil, fmt.Errorf("%w: reading block %d: %v", ErrFileChanged, b, err)
		}
	}
	return p, nil
}

// await reads replies until the window is acknowledged (or partly, which
// moves base), a duplicate asks for a resend, or the timeout passes. It
// reports whether base moved.
func (t *transfer) await(ctx context.Context) (bool, error) {
	t.conn.SetReadDeadline(time.Now().Add(t.timeout))
	if ctx.Err() != nil { // cancelled before the deadline above replaced the AfterFunc's
		return false, nil
	}
	for {
		n, from, err := t.conn.ReadFromUDPAddrPort(t.in)
		if err != nil {
			if ctx.Err() != nil {
				return false, nil // run reports the shutdown
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false, nil
			}
			return false, fmt.Errorf("reading ACK: %w", err)
		}
		if from != t.peer {
			// RFC 1350 §4: a packet from another port gets ERROR 5; the
			// transfer goes on.
			t.conn.WriteToUDPAddrPort(appendError(nil, errCodeUnknownTID, "unknown transfer ID"), from)
			continue
		}
		op, block, msg, err := parseReply(t.in[:n])
		if err != nil {
			continue
		}
		if op == opERROR {
			if t.base == 0 && block == errCodeOptionRefused {
				return false, fmt.Errorf("%w: refused the options %v: %s", ErrClientAbort, t.oack, msg)
			}
			return false, fmt.Errorf("%w: error %d: %s", ErrClientAbort, block, msg)
		}
		if t.base == 0 {
			if block == 0 {
				t.base = 1
				return true, nil
			}
			continue
		}
		// The ACK names a block in [base-1, sent] (mod 65536), else it is stale.
		i := t.base - 1 + int64(uint16(block-uint16(t.base-1)))
		switch {
		case i > t.sent:
			continue
		case i >= t.base:
			t.base = i + 1
			t.dupResent = false
			return true, nil
		case t.o.windowSize > 1 && !t.dupResent:
			t.dupResent = true
			return false, nil
		}
	}
}

// sendError tells the client the transfer ends; failures to send are moot.
func (t *transfer) sendError(code uint16, msg string) {
	t.conn.WriteToUDPAddrPort(appendError(nil, code, msg), t.peer)
}

// source is a file to send: its data, size, and what to close afterwards.
type source struct {
	io.ReaderAt
	size  int64
	close func() error
}

// maxNetasciiSize bounds files sent in netascii mode, which are converted in
// memory (network boot programs use octet).
const maxNetasciiSize = 16 << 20

// ErrTooLarge refuses a netascii transfer of a big file.
var ErrTooLarge = errors.New("file too large for netascii mode, use octet")

// newSource prepares f for sending in mode; it takes ownership of f.
func newSource(f *os.File, size int64, mode string) (source, error) {
	if mode != modeNetascii {
		return source{ReaderAt: f, size: size, close: f.Close}, nil
	}
	defer f.Close()
	if size > maxNetasciiSize {
		return source{}, ErrTooLarge
	}
	b, err := io.ReadAll(io.LimitReader(f, maxNetasciiSize+1))
	if err != nil {
		return source{}, fmt.Errorf("reading file: %w", err)
	}
	if len(b) > maxNetasciiSize {
		return source{}, ErrTooLarge
	}
	n := toNetascii(b)
	return source{ReaderAt: bytesReaderAt(n), size: int64(len(n)), close: func() error { return nil }}, nil
}

// toNetascii converts to netascii (RFC 764): LF becomes CR LF, CR becomes CR NUL.
func toNetascii(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/16)
	for _, c := range b {
		switch c {
		case '\n':
			out = append(out, '\r', '\n')
		case '\r':
			out = append(out, '\r', 0)
		default:
			out = append(out, c)
		}
	}
	return out
}

// bytesReaderAt is an in-memory io.ReaderAt.
type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
